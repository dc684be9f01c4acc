"""Launch the FuseChat token-alignment explorer."""

from workbench.fusion.app import build_app

if __name__ == "__main__":
    build_app().queue().launch(server_name="127.0.0.1")
