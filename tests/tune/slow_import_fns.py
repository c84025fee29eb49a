"""A trial function whose module takes 2 s to import: a worker process that unpickles it starts slowly."""
import time

time.sleep(2.0)


def quick_trial(config: dict, reporter) -> None:
    for epoch in range(1, reporter.max_epochs + 1):
        if reporter(epoch=epoch, reward=config["x"] * epoch) != "CONTINUE":
            return
