"""What the `deeprl` command does to its own process, and the library must not do to its caller's.

Both save time that is not training: on a 2-core machine `deeprl train ppo CartPole-v1` spent about 0.7 s
importing torch._dynamo, which nothing here uses, and up to 1 s tearing down the interpreter after its last
line of output (docs/benchmarks.md, "Whole process"). Neither changes what a run computes or writes.
`deeprl.cli.main()` run as the command (the console script, `python -m deeprl`) calls `claim_process`;
`main(argv)` called from Python (tests, notebooks) and the library API (`deeprl.train`) do not, and then
`skip_dynamo_import` does nothing. A run with --compile needs torch._dynamo after all: `restore_dynamo_wrappers`
(deeprl.compiling calls it) puts torch's own wrappers back first.
"""

from __future__ import annotations

import atexit
import functools
import gc
import sys
from typing import Any

# torch.optim.Optimizer's methods that torch wraps with torch._disable_dynamo (torch/optim/optimizer.py)
_OPTIMIZER_METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
_claimed = False  # set by claim_process: this process is the `deeprl` command's
_CACHE = "__dynamo_disable"  # where torch/_compile.py's wrapper caches torch._dynamo.disable(fn)
# The names torch 2.13's optimizer.step wrapper (_use_grad_for_differentiable) uses; any other wrapper is left alone
_STEP_WRAPPER_NAMES = (
    "torch._dynamo",
    "cast",
    "Optimizer",
    "is_grad_enabled",
    "set_grad_enabled",
    "defaults",
    "_dynamo",
    "graph_break",
)
_undo: list[Any] = []  # what skip_dynamo_import changed, as functions that change it back


def skip_dynamo_import() -> None:
    """Spare this process torch._dynamo's import (0.7 s; importing torch itself took 0.75 s).

    torch.optim imports torch._dynamo on the first call of an optimizer's methods, only for torch.compile:
    - Optimizer.__init__'s add_param_group, zero_grad, state_dict and load_state_dict are wrapped with
      torch._disable_dynamo, which on the first call imports torch._dynamo to make `torch._dynamo.disable(fn)`
      (it keeps torch.compile from tracing into fn; outside a compiled function it just calls fn) and caches
      it on fn as `__dynamo_disable`. Here fn itself stands in that cache.
    - each optimizer's step is wrapped by _use_grad_for_differentiable, which sets grad mode to
      `defaults["differentiable"]` around the step and calls torch._dynamo.graph_break() before and after
      it, a no-op outside torch.compile. Here step gets the same wrapper without the graph breaks.
    The `deeprl` command compiles nothing, so it makes the same calls without the import. Each change is made
    only where torch's wrapper is exactly the one described (else that method is left as it is), and none
    once torch._dynamo is imported, and none outside the command's own process (`claim_process`): a program
    calling `deeprl.train` may compile.
    """
    if not _claimed or "torch._dynamo" in sys.modules:
        return
    import torch
    from torch.optim.optimizer import Optimizer, _use_grad_for_differentiable

    for name in _OPTIMIZER_METHODS:
        wrapper = getattr(Optimizer, name, None)
        fn = getattr(wrapper, "__wrapped__", None)
        code = getattr(wrapper, "__code__", None)
        if fn is None or code is None or _CACHE not in code.co_consts or hasattr(fn, _CACHE):
            continue
        setattr(fn, _CACHE, fn)
        _undo.append(functools.partial(delattr, fn, _CACHE))

    use_grad = _use_grad_for_differentiable(lambda *args, **kwargs: None).__code__
    if use_grad.co_names != _STEP_WRAPPER_NAMES:
        return
    for cls in vars(torch.optim).values():
        step = vars(cls).get("step") if isinstance(cls, type) and issubclass(cls, Optimizer) else None
        if getattr(step, "__code__", None) is use_grad and hasattr(step, "__wrapped__"):
            cls.step = _grad_mode_step(step.__wrapped__)
            _undo.append(functools.partial(_restore_step, cls, step))


def restore_dynamo_wrappers() -> None:
    """Undo `skip_dynamo_import`: torch's own optimizer wrappers again, for a process that compiles after all
    (--compile, deeprl.compiling). A no-op where nothing was changed."""
    while _undo:
        _undo.pop()()


def _restore_step(cls: Any, step: Any) -> None:
    """torch's own step wrapper back on an optimizer class, hooked for profiling and step hooks as
    Optimizer.__init__ hooks it (an optimizer made since the patch found the patched step, and hooked that)."""
    from torch.optim.optimizer import Optimizer

    if getattr(cls.step, "hooked", False):
        step = Optimizer.profile_hook_step(step)
        step.hooked = True
    cls.step = step


def _grad_mode_step(step: Any) -> Any:
    """torch's _use_grad_for_differentiable(step) (torch/optim/optimizer.py) without its two
    torch._dynamo.graph_break() calls."""
    import torch

    @functools.wraps(step)
    def _use_grad(self: Any, *args: Any, **kwargs: Any) -> Any:
        prev_grad = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(self.defaults["differentiable"])
            return step(self, *args, **kwargs)
        finally:
            torch.set_grad_enabled(prev_grad)

    return _use_grad


def claim_process() -> None:
    """Mark this process as the `deeprl` command's own, and at its exit skip the interpreter's garbage
    collections over every object still alive (after torch's import, hundreds of thousands of them: up to
    1 s on a shared 2-core machine) by freezing them first.

    gc.freeze runs as an exit handler, after the command's work and after the handlers registered later
    (LIFO); the command closes its files, checkpoints and trackers itself, it leaves nothing to the collector."""
    global _claimed
    if not _claimed:
        _claimed = True
        atexit.register(gc.freeze)
