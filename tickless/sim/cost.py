"""What a guest's timers cost the host CPU: an explicit, linear model whose parameters are
fitted to real runs (``tickless.sim.cost_fit``), never set to reproduce a reported result.

    guest cost  = baseline x time + per_interrupt x timer interrupts + per_hypercall x calls
    CPU cost    = its guests' costs + per_wakeup x host timer wake-ups + fixed x time
                  + I/O handler time

* ``per_interrupt_ns``: one timer interrupt a guest takes, on its vCPU thread: the
  injection, the exit and re-entry, the guest's handler (and its re-arm, where the re-arm
  cannot be told apart from it).
* ``per_hypercall_ns``: one device programming call that exits (lguest's SET_CLOCKEVENT).
* ``per_wakeup_ns``: one host timer wake-up, on the host timer thread.
* ``baseline_ns_per_s``: per guest, what does not depend on its timers (the VMM's per-guest
  share of its own loop).
* ``fixed_ns_per_s``: the VMM's own loop and watchdog, whatever the number of guests.

Two models ship:

``box``: fitted on this host by ``tickless sim fit`` from real ``tickless idle`` runs of
small fleets (``data/box-cost.json`` says which runs, and holds their summaries; the
records themselves are shipped beside it so that a test can refit them). Regenerate it
with ``./run bench sim_predicts --ship``. Any ``tickless sim fit`` output can be
used instead: ``tickless sim fleet --cost-model FILE.json``.

``kvm-2007``: KVM as Ingo Molnar measured it when he wrote that dynticks "makes the
overhead of an idle guest go down by a factor of 10-15" (KernelTrap, Feb 2007). Avi Kivity
said in the same thread that "currently an idle guest consumes a few percent cpu": ~3 % at
the then-usual HZ=1000 is c = 30 us per tick (exit to QEMU's userspace PIT of the time and
back). h = 2 us (an in-kernel hypercall exit). B = 2.5 ms/s per guest: QEMU's own main
loop, which kept waking whatever the guest did (its display refresh timer alone every
30 ms, ``GUI_REFRESH_INTERVAL``, ~33 wake-ups/s at ~75 us each). That B is an assumption,
not a measurement; B between 2.1 and 3.3 ms/s gives 10-15x, and any B makes the ratio
finite (it is HZ*c/(r*(c+h)) ~ 940x with no baseline at all).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tickless.errors import InputError
from tickless.jsonfields import StrictReader, read_json_file

SECOND_NS = 1_000_000_000
COST_MODEL_FORMAT = "tickless-cost-model"
BOX_DATA = "data/box-cost.json"
PARAMETERS = (
    "per_interrupt_ns",
    "per_hypercall_ns",
    "per_wakeup_ns",
    "baseline_ns_per_s",
    "fixed_ns_per_s",
)


class CostModelError(InputError):
    """A cost model file that cannot be used; the message is one line naming it."""


@dataclass(frozen=True)
class CostModel:
    """Host CPU per timer event, per guest and per host; see the module docstring."""

    name: str
    per_interrupt_ns: float
    per_hypercall_ns: float
    per_wakeup_ns: float
    baseline_ns_per_s: float  # per guest
    source: str
    fixed_ns_per_s: float = 0.0  # the VMM, whatever its guests
    fit: dict[str, Any] = field(default_factory=dict, compare=False)  # how, from what

    def guest_cpu_ns(
        self,
        interrupts: npt.NDArray[np.int64],
        hypercalls: npt.NDArray[np.int64],
        duration_ns: float,
    ) -> npt.NDArray[np.float64]:
        """Host CPU ns spent on each guest over ``duration_ns``."""
        baseline = self.baseline_ns_per_s * duration_ns / SECOND_NS
        return baseline + self.per_interrupt_ns * interrupts + self.per_hypercall_ns * hypercalls

    def wakeup_cpu_ns(self, wakeups: int) -> float:
        return self.per_wakeup_ns * wakeups

    def fixed_cpu_ns(self, duration_ns: float) -> float:
        return self.fixed_ns_per_s * duration_ns / SECOND_NS

    def to_json_dict(self) -> dict[str, Any]:
        return {"format": COST_MODEL_FORMAT, "version": 1, **asdict(self)}


def cost_model_from_json(data: Any, where: str) -> CostModel:
    """A model ``to_json_dict`` wrote; anything else is a ``CostModelError`` naming ``where``."""
    if not isinstance(data, dict) or data.get("format") != COST_MODEL_FORMAT:
        raise CostModelError(f"{where}: not a cost model (tickless sim fit writes them)")
    top = StrictReader(data, CostModelError, f"{where}: ")
    if top.int_("version") != 1:
        raise CostModelError(f"{where}: cost model version {data['version']}, this tool reads 1")
    values = {}
    for key in PARAMETERS:
        values[key] = top.float_(key, minimum=0.0)
    fit = data.get("fit", {})
    if not isinstance(fit, dict):
        raise CostModelError(f"{where}: key 'fit' must be an object")
    return CostModel(name=top.str_("name"), source=top.str_("source"), fit=fit, **values)


def load_cost_model(path: Path) -> CostModel:
    return cost_model_from_json(read_json_file(path, CostModelError), str(path))


@functools.cache
def box_model() -> CostModel:
    """The shipped fit of this host (``data/box-cost.json``)."""
    text = resources.files("tickless.sim").joinpath(BOX_DATA).read_text(encoding="utf-8")
    return cost_model_from_json(json.loads(text), BOX_DATA)


KVM_2007 = CostModel(
    name="kvm-2007",
    per_interrupt_ns=30_000.0,
    per_hypercall_ns=2_000.0,
    per_wakeup_ns=0.0,
    baseline_ns_per_s=2_500_000.0,
    source="KVM with QEMU, early 2007: 'an idle guest consumes a few percent cpu' (Kivity) "
    "at HZ=1000; dynticks cut it 10-15x (Molnar); baseline 2.5 ms/s per guest assumed "
    "(QEMU's own main loop)",
)

COST_MODEL_NAMES = ("box", "kvm-2007")


def resolve_cost_model(name_or_path: str) -> CostModel:
    """A built-in model by name, or a JSON file ``tickless sim fit`` wrote."""
    if name_or_path == "box":
        return box_model()
    if name_or_path == "kvm-2007":
        return KVM_2007
    if not name_or_path.endswith(".json"):
        raise CostModelError(
            f"--cost-model {name_or_path!r}: use {', '.join(COST_MODEL_NAMES)} "
            "or a .json file written by tickless sim fit"
        )
    return load_cost_model(Path(name_or_path))
