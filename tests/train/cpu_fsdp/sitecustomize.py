"""Let Accelerate select FSDP on CPU processes: imported at start-up by the ranks of tests/test_distributed.py.

Accelerate turns ``ACCELERATE_USE_FSDP`` (set by ``accelerate launch`` from configs/accelerate/fsdp.yaml)
into FSDP only when the ranks run on an accelerator; on CPU ranks (``ACCELERATE_USE_CPU=1``, gloo) it
silently trains with DDP instead. This takes that branch for CPU ranks at the end of the same call (the
first, initialising ``AcceleratorState``) with the same effects (the plugin and its mixed precision, and the
type recorded in ``PartialState``); everything after it — torch's ``fully_shard``, sharded checkpoints, the
gathered final state dict — is the code GPUs run, in float32 here (the tests pass ``--mixed_precision no``).
"""

import os

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__


def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    fresh = not AcceleratorState._shared_state
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    wanted = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" or fsdp_plugin is not None
    if fresh and wanted and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
        if self._mixed_precision != "no" and fsdp_plugin is not None:
            fsdp_plugin.set_mixed_precision(self._mixed_precision)


AcceleratorState.__init__ = _init_with_fsdp_on_cpu
