"""A browser demo of a trained MoWE model (Gradio).

Usage::

    python -m mowe web --model DIR [--host 127.0.0.1] [--port 7860]

Open the printed URL: upload or record a clip, type a question, and see the answer and a
bar chart of the weak encoder each router chose. Needs the ``demo`` extra
(``pip install -e .[demo]``: Gradio). Nothing is sent outside this machine (Gradio's
analytics are off; ``--share`` is not offered).
"""

import argparse
import logging
import os
import sys

from mowe.inference.ask import add_decoding_arguments, add_model_arguments, decoding_options, load_model

logger = logging.getLogger("mowe.inference.web_demo")

EXAMPLE_INSTRUCTIONS = ["Transcribe the speech.", "What emotion does the speaker express?",
                        "Describe the sounds in this clip.", "How many tones do you hear?"]


def routing_table(answer, num_encoders):
    """Rows ``(weak encoder, router, chosen)`` for the bar chart (a pandas DataFrame)."""
    import pandas

    rows = []
    for index, router in enumerate(answer.routers or []):
        for encoder in range(num_encoders):
            chosen = 1 if answer.selected and answer.selected[index] == encoder else 0
            rows.append({"weak encoder": f"E{encoder}", "router": f"{router} (#{index})",
                         "chosen": chosen})
    return pandas.DataFrame(rows, columns=["weak encoder", "router", "chosen"])


def build_demo(inference, decoding=None, title=None):
    """The Gradio Blocks app for ``inference`` (an AudioLLMInference).

    Arguments
    ---------
    inference : mowe.inference.api.AudioLLMInference
    decoding : dict, optional
        Decoding options for every answer.
    title : str, optional
    """
    import gradio as gr

    from mowe.data.audio import AudioError

    decoding = dict(decoding or {})
    routers = ", ".join(inference.routers) or "none (base-only model)"

    def respond(audio_path, instruction):
        if not audio_path:
            raise gr.Error("Upload or record a clip first.")
        if not instruction or not instruction.strip():
            raise gr.Error("Type a question or instruction about the clip.")
        try:
            answer = inference.answer(audio_path, instruction.strip(), return_selected=True,
                                      **decoding)
        except (AudioError, ValueError) as error:
            raise gr.Error(str(error))
        if answer.selected is None:
            note = "This model has no mixture of weak encoders (baseline): no routing."
        else:
            note = "Chosen: " + ", ".join(f"{router} router → E{encoder}" for router, encoder
                                          in zip(answer.routers, answer.selected))
        return answer.text, routing_table(answer, inference.num_weak_encoders), note

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    with gr.Blocks(title=title or f"MoWE: {inference.name}") as demo:
        gr.Markdown(f"# {title or 'MoWE audio LLM: ' + inference.name}\n"
                    f"Upload or record a clip, ask about it. Routers: {routers}; "
                    f"{inference.num_weak_encoders} weak encoders.")
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                 label="Audio", elem_id="mowe-audio")
                instruction = gr.Textbox(label="Question or instruction",
                                         value=EXAMPLE_INSTRUCTIONS[0], lines=2,
                                         elem_id="mowe-instruction")
                gr.Examples([[text] for text in EXAMPLE_INSTRUCTIONS], inputs=[instruction],
                            label="Example instructions")
                ask = gr.Button("Ask", variant="primary", elem_id="mowe-ask")
            with gr.Column():
                answer = gr.Textbox(label="Answer", lines=3, interactive=False,
                                    elem_id="mowe-answer")
                chart = gr.BarPlot(x="weak encoder", y="chosen", color="router",
                                   label="Weak encoders chosen by each router",
                                   y_lim=[0, 1], elem_id="mowe-routing")
                note = gr.Markdown(elem_id="mowe-routing-note")
        ask.click(respond, inputs=[audio, instruction], outputs=[answer, chart, note],
                  api_name="answer")
    demo.mowe_theme = theme
    return demo


def key_checker(api_key):
    """Gradio's ``auth`` callable: any user name, the API key as the password."""
    import secrets

    def check(username, password):
        return secrets.compare_digest(str(password).encode(), api_key.encode())

    return check


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mowe web", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    add_decoding_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--title", help="page title")
    parser.add_argument("--max_file_mb", type=float, default=50.0,
                        help="largest upload in MiB")
    parser.add_argument("--stop_after", type=float, default=None,
                        help="stop after this many seconds (smoke tests)")
    parser.add_argument("--api_key", default=None,
                        help="the page asks for this key as its password (any user name; "
                             "default: $MOWE_API_KEY; none: open)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        sys.exit("error: the demo needs Gradio: pip install -e '.[demo]' (or pip install gradio)")
    inference = load_model(args)
    demo = build_demo(inference, decoding_options(args), args.title)
    from mowe.utils.http_server import resolve_api_key, warn_if_exposed

    api_key = resolve_api_key(args.api_key)
    warn_if_exposed(args.host, api_key, "mowe.inference.web_demo")
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True,
                max_file_size=f"{int(args.max_file_mb)}mb", theme=demo.mowe_theme,
                footer_links=[], show_error=True, quiet=True,
                auth=key_checker(api_key) if api_key else None,
                auth_message="Enter any user name and the server's API key as password.")
    print(f"demo of {inference.name} on http://{args.host}:{args.port}", flush=True)
    import time

    try:
        start = time.monotonic()
        while args.stop_after is None or time.monotonic() - start < args.stop_after:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
