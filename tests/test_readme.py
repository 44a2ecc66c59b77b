"""README.md stays true: every command in it runs, every link and extra it names exists, it points
nowhere outside the repository, and every third-party package the code imports is declared.

How `test_every_readme_command_runs` reads the README: its fenced code blocks, in order, in one
temporary working directory (so `runs/...` and every file a command writes land in tmp_path).

- ```python blocks are executed, each in a fresh namespace. Their budgets are already small.
- ```python file=PATH blocks are files a reader would create (the user-env example): the test writes
  them to PATH under the working directory, which it puts on sys.path, as running python there would.
- ```python notebook blocks draw into a Jupyter cell's output: they run with deeprl's "am I in a
  notebook?" check answered yes and IPython's `display` replaced by a recorder.
- ```bash blocks: each line, split on `&&`, its `#` comment dropped, is either
  - a `deeprl ...` command, run in-process through `deeprl.cli.main(shlex.split(line))` with the
    adjustments below, and it must exit 0; or
  - a set-up or other tool's command (the NOT_DEEPRL allowlist: make, pip, venv, tensorboard,
    jupyter...), skipped.
- ```console blocks: `$ deeprl ...` lines run as written; the lines after each are its expected output
  (stdout and stderr together), `...` standing for text the README leaves out.
- ```text blocks (outputs, layouts) and unlabelled blocks are not commands.

Adjustments to `deeprl` lines, so the whole README runs in under a minute on 2 cores (about 25 s):
- `deeprl train ALGO ENV` gets `--total-steps 256` unless the line gives a budget (`--total-steps` or
  `--episodes`), and `--eval-every 256 --eval-episodes 1 --max-episode-steps 100` unless it gives
  those (TINY_TRAIN; the last keeps an evaluation episode short, a CarRacing or Atari one too).
- A bare `deeprl train --resume DIR` (no budget) continues a run stopped early, in the README's story;
  the test's run of DIR finished its tiny budget and has nothing left to do, so the test gives it
  `--total-steps 512` (RESUME_BUDGET). A `--resume` line's budget is capped at 1024 steps or 500
  episodes (RESUME_CAP): the resumed run keeps the test's evaluation every 256 steps.
- Placeholders: `runs/<the printed dir>` and `RUN_DIR` become the run directory the last `deeprl
  train` line printed (or the last Python `deeprl.train` made).
- `--device cuda` runs as `--device cpu` when no CUDA device is present (GPU_FALLBACK): the command is
  checked in everything but the device.
- `deeprl bench` trials are replaced by a stub (BENCH_STUB): each real trial trains to the threshold
  in a fresh process (minutes per row). The rest runs for real: argument checks, the row plan against
  the presets, Stable-Baselines3's import for `--vs sb3`, the report. tests/test_bench.py runs real
  trials, SB3's included.
- Lines that need a package the `dev` extra may lack are skipped when it is missing
  (NEEDS_PACKAGE); with `make test`'s install, none is.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import importlib.util
import io
import re
import shlex
import sys
import time
from pathlib import Path

import pytest

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # Python 3.10: the tests that read pyproject.toml skip
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Commands in bash blocks that are not deeprl's: set-up (run by `make` and CI, not here) and other tools.
NOT_DEEPRL = ("make", "pip", "python3 -m venv", "python -m venv", ".venv/bin/pip", ". .venv/bin/activate", "source")
NOT_DEEPRL += ("git clone", "cd", "tensorboard", "jupyter")

RESUME_BUDGET = ["--total-steps", "512"]
TINY_TRAIN = {"--total-steps": "256", "--eval-every": "256", "--eval-episodes": "1", "--max-episode-steps": "100"}
RESUME_CAP = {"--total-steps": 1024, "--episodes": 500}
BUDGET_FLAGS = ("--total-steps", "--episodes")
PLACEHOLDERS = ("runs/<the printed dir>", "RUN_DIR")

# Env-id prefixes and the module their envs need: a line on such an env is skipped (with the reason) when
# the module is missing. All are in the `dev` extra (atari, box2d, mujoco, minatar), so `make test` runs them.
NEEDS_PACKAGE = {
    "ALE/": "ale_py",
    "MinAtar/": "minatar",
    "LunarLander": "Box2D",
    "CarRacing": "Box2D",
    "HalfCheetah": "mujoco",
    "Hopper": "mujoco",
    "policy.onnx": "onnx",  # deeprl export --format onnx (the export extra)
}
# Modules a ```python block may import that the dev extra may lack: the block is skipped when one is missing.
OPTIONAL_IMPORTS = {"onnxruntime", "onnx"}  # the export extra


# ---------------------------------------------------------------- reading the README
def code_blocks(text: str) -> list[tuple[str, str, int]]:
    """(info string, body, line number of the opening fence) of every fenced block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(.*)$", lines[i])
        if m:
            start, body = i + 1, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append((m.group(1).strip(), "\n".join(body), start))
        i += 1
    return blocks


def shell_commands(body: str) -> list[str]:
    """The commands of a bash block: one per line and per `&&`, comments dropped."""
    out = []
    for line in body.splitlines():
        code = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        out += [part.strip() for part in code.split("&&") if part.strip()]
    return out


def is_deeprl(command: str) -> bool:
    if command.startswith("deeprl ") or command == "deeprl":
        return True
    assert command.startswith(NOT_DEEPRL), f"README command neither deeprl's nor in NOT_DEEPRL: {command!r}"
    return False


# ---------------------------------------------------------------- running a deeprl line
def flag_given(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def with_run(command: str, last_run: str | None) -> str:
    """The command with its run-directory placeholders replaced by the last run trained."""
    for placeholder in PLACEHOLDERS:
        if placeholder in command:
            assert last_run is not None, f"{placeholder} before any run was trained"
            command = command.replace(placeholder, last_run)
    return command


def adjusted(argv: list[str]) -> list[str]:
    """The README's argv with the tiny budgets and the device fallback described above."""
    import torch

    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "cuda" and i > 0 and argv[i - 1] == "--device" and not torch.cuda.is_available():
            argv[i] = "cpu"  # GPU_FALLBACK
    if argv[:1] == ["train"]:
        resuming = flag_given(argv, "--resume")
        has_budget = any(flag_given(argv, f) for f in BUDGET_FLAGS)
        if resuming and not has_budget:
            argv += RESUME_BUDGET
        elif resuming:
            for i, arg in enumerate(argv[:-1]):
                if arg in RESUME_CAP:
                    argv[i + 1] = str(min(int(argv[i + 1]), RESUME_CAP[arg]))
        elif not resuming and "--help" not in argv:
            for flag, value in TINY_TRAIN.items():
                if not (flag_given(argv, flag) or (flag in BUDGET_FLAGS and has_budget)):
                    argv += [flag, value]
    return argv


def missing_package(argv: list[str]) -> str | None:
    for arg in argv:
        for prefix, module in NEEDS_PACKAGE.items():
            if arg.startswith(prefix) and importlib.util.find_spec(module) is None:
                return module
    return None


def run_cli(argv: list[str]) -> tuple[int, str]:
    """deeprl.cli.main in this process; (exit status, stdout + stderr)."""
    from deeprl.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except SystemExit as e:  # --help
            code = e.code or 0
    return code, out.getvalue()


def stub_trial(t):  # BENCH_STUB
    if t.library == "throughput":
        return {"raw_steps_per_s": 1.0, "acting_steps_per_s": 1.0, "n_envs": 1}
    return {"solved_at_wall_s": 1.0, "solved_at_env_steps": 100, "final_return": 0.0, "env_steps": 100,
            "train_wall_s": 1.0}  # fmt: skip


class _Handle:
    def __init__(self, shown: list):
        self.shown = shown

    def update(self, obj) -> None:
        self.shown.append(obj)


# ---------------------------------------------------------------- the tests
@pytest.mark.timeout(300)
def test_every_readme_command_runs(tmp_path, monkeypatch):
    import IPython.display

    import deeprl.bench
    import deeprl.viz.notebook

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DEEPRL_HOME", str(tmp_path / "deeprl-home"))  # the snapshot key, not the user's
    monkeypatch.setattr(deeprl.bench, "run_trial", stub_trial)
    shown: list = []
    monkeypatch.setattr(deeprl.viz.notebook, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=None: shown.append(obj) or _Handle(shown))
    imported_before = set(sys.modules)

    last_run: str | None = None
    ran, skipped, timings = [], [], []
    for info, body, line in code_blocks(README.read_text()):
        words = info.split()
        lang = words[0] if words else ""
        where = f"README.md:{line}"
        if lang == "python" and any(w.startswith("file=") for w in words):
            path = tmp_path / next(w for w in words if w.startswith("file="))[len("file=") :]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body + "\n")
        elif lang == "python":
            missing = sorted(m for m in imported_names(body) & OPTIONAL_IMPORTS if importlib.util.find_spec(m) is None)
            if missing:
                skipped.append(f"{where}: the Python block (needs {', '.join(missing)})")
                continue
            before = len(shown)
            namespace = {"__name__": "__readme__"}
            try:
                exec(compile(body, where, "exec"), namespace)
            except Exception as e:
                raise AssertionError(f"the Python block at {where} failed: {e!r}") from e
            if "notebook" in words:
                assert len(shown) > before, f"the notebook block at {where} showed nothing"
            runs = sorted((tmp_path / "runs").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
            last_run = str(runs[-1].parent.relative_to(tmp_path)) if runs else last_run
            ran.append(where)
        elif lang == "bash":
            for command in shell_commands(body):
                if not is_deeprl(command):
                    skipped.append(f"{where}: {command} (not deeprl)")
                    continue
                argv = adjusted(shlex.split(with_run(command, last_run))[1:])
                module = missing_package(argv)
                if module:
                    skipped.append(f"{where}: {command} (needs {module})")
                    continue
                started = time.perf_counter()
                code, out = run_cli(argv)
                timings.append((time.perf_counter() - started, f"{where}: {command}"))
                assert code == 0, f"{where}: `{command}` ran as {argv} exited {code}:\n{out[-3000:]}"
                saved = re.findall(r"saved to (\S+)", out)
                last_run = saved[-1] if saved else last_run
                ran.append(f"{where}: {command}")
        elif lang == "console":
            check_console_block(body, where)
            ran.append(where)
        else:
            assert lang in ("", "text"), f"{where}: a ```{lang} block: teach tests/test_readme.py to check it"
    for name in set(sys.modules) - imported_before:
        if name == "my_envs" or name.startswith("my_envs."):
            del sys.modules[name]  # the README's example package lives in this test's tmp_path only
    assert len(ran) >= 40, ran  # the README's commands did run (a parsing slip would skip them all)
    print("skipped:", *skipped, sep="\n  ")
    print("slowest:", *(f"{s:5.1f} s  {c}" for s, c in sorted(timings, reverse=True)[:8]), sep="\n  ")


def check_console_block(body: str, where: str) -> None:
    """`$ deeprl ...` lines and the output the README shows for them ('...' = text left out)."""
    entries: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            entries.append((line[2:], []))
        else:
            entries[-1][1].append(line)
    for command, expected in entries:
        assert is_deeprl(command), f"{where}: {command}"
        code, out = run_cli(shlex.split(command)[1:])
        if any("error" in line for line in expected):
            assert code == 2, f"{where}: `{command}` exited {code}, the README shows an error:\n{out}"
        for line in expected:
            for part in filter(None, (p.strip() for p in line.split("..."))):
                assert part in " ".join(out.split()), f"{where}: `{command}` printed\n{out}\nnot {part!r}"


def test_readme_points_only_inside_the_repository():
    text = README.read_text()
    for outside in ("shared/", "DESIGN.md", "notes/deep-rl-notes"):
        assert outside not in text, f"README.md points outside the repository: {outside!r}"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README.md links to {target}, which is not in the repository"


def test_readme_contents_links_to_its_sections():
    text = README.read_text()
    text_outside_code = re.sub(r"```.*?```", "", text, flags=re.S)
    headings = re.findall(r"^#{2,3} (.+)$", text_outside_code, flags=re.M)
    anchors = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in anchors, f"README.md links to #{anchor}, which no heading makes"


needs_tomllib = pytest.mark.skipif(tomllib is None, reason="reading pyproject.toml needs tomllib (Python 3.11+)")


@needs_tomllib
def test_readme_names_only_extras_that_exist():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = set(re.findall(r"'\.\[([\w,-]+)\]'", README.read_text()))
    named |= set(re.findall(r"^\| `([\w-]+)` \|", README.read_text(), flags=re.M)) & (extras | {"tensorboard"})
    for group in named:
        for extra in group.split(","):
            assert extra in extras, f"README.md names the extra {extra!r}; pyproject.toml has {sorted(extras)}"
    assert "pip install 'deeprl[" not in README.read_text(), "deeprl is not on PyPI: pip install -e '.[extra]'"


def imported_modules(path: Path) -> set[str]:
    return imported_names(path.read_text())


def imported_names(source: str) -> set[str]:
    """Top-level names of the modules code imports: import statements and importlib.import_module("...")."""
    tree = ast.parse(source)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.split(".")[0])
    return names


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement(spec: str) -> tuple[str, list[str]]:
    """(name, extras) of a requirement string such as 'gymnasium[atari,box2d]>=1.1,<2'."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", spec)
    return m.group(1), [e.strip() for e in (m.group(2) or "").split(",") if e.strip()]


def declared_distributions() -> set[str]:
    """Distributions pyproject.toml names (dependencies and every extra), with what the extras of those
    bring (gymnasium[atari] brings ale-py), normalised."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    declared = set()
    for name, extras in map(requirement, specs):
        declared.add(normalized(name))
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for sub in requires:
            marker = sub.partition(";")[2]
            if any(re.search(rf"extra\s*==\s*[\"']{re.escape(e)}[\"']", marker) for e in extras):
                declared.add(normalized(requirement(sub)[0]))
    return declared


@needs_tomllib
def test_every_third_party_import_is_declared():
    """Each package the code imports (deeprl, its tests, benchmarks, docs and notebook tooling) is in
    pyproject.toml's dependencies or an extra: Pillow (frames), psutil (replay memory check), IPython..."""
    files = [*ROOT.glob("deeprl/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py")]
    files += [*ROOT.glob("docs/*.py"), *ROOT.glob("notebooks/*.py")]
    ours = {"deeprl", "conftest", "my_envs"} | {p.stem for p in ROOT.glob("benchmarks/*.py")}
    ours |= {p.stem for p in ROOT.glob("tests/*.py")}
    imported = set().union(*(imported_modules(p) for p in files)) - set(sys.stdlib_module_names) - ours
    provided_by = importlib.metadata.packages_distributions()
    declared = declared_distributions()
    undeclared = {
        module: provided_by.get(module, ["(not installed)"])
        for module in imported
        # an optional package that is not installed here (rltools, which needs a C++ toolchain) counts as
        # declared when an extra names the distribution of the same name
        if not any(normalized(d) in declared for d in provided_by.get(module, [module]))
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
