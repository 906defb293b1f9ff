"""Training and testing loops (PySlowFast's AVA recipe) on one process or many (torchrun).

Modules: ``solver`` (SGD, learning-rate schedule), ``loader`` (samplers that give the same batches on 1 or K
processes), ``distributed`` (process group from torchrun's environment), ``trainer`` (the training loop,
checkpoints, resume), ``tester`` (predictions, AVA CSVs, evaluation), ``logs`` (CSV/JSON/TensorBoard logs) and
``launch`` (whole runs from a config). Import the submodules directly; this package imports nothing heavy.
"""
