"""Sweeps: a grid of settings of one command (``measure``, ``idle``, ``sim fleet``) run as
points on a Dask cluster, collected into one table that survives Ctrl-C and crashes.

``grid`` turns ``--param`` lines and grid files into points, ``runners`` runs one point on
a worker and flattens its record into a row, ``store`` keeps the rows (Parquet and CSV,
rewritten atomically after each point) and ``executor`` schedules points on a cluster:
simulator points in parallel, points that time real hardware one at a time per host.
Turning a point's settings into a spec is the command line's job (``tickless.cli.sweep``):
it parses them with the very options of the command, so ``--param slop=50us`` means what
``--slop 50us`` means.
"""
