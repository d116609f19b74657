"""The headless tools on the same core: the ``rationalrewards`` CLI, the dispatcher, manifests and
tables, preference evaluation, PARROT, distillation, RL rewards, the refine pipeline."""
