"""A tiny job: prints a few lines, one per second, then succeeds."""

import time

for step in range(1, 6):
    print(f"step {step} of 5", flush=True)
    time.sleep(1)
print("done")
