"""The tiny MGRAL settings of the end-to-end tests (seconds per step on a CPU)."""

TINY = {"dataset": {"digit_scenes": {"n_pool": 40, "n_test": 12}},
        "detector": {"channels": [8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1, "head_channels": 16},
        "train": {"epochs": 1, "min_iterations": 26, "batch_size": 4, "warmup_iterations": 2, "checkpoint_every": 0},
        "strategies": {"mgral": {"records": 2, "proxy_iterations": 4, "agent_iterations": 3, "sequence_length": 8,
                                 "max_fallbacks": 1}},
        "device": "cpu", "num_threads": 1}
