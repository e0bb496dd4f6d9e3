"""The results model every backend shares: what a measurement asks for (``spec``), the record
it produces and its on-disk schema (``schema``), the statistics (``stats``) and the paper's
Table 1 (``paper``). It imports no backend, so results can be read, compared and simulated
on a machine without KVM."""
