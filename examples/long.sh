#!/usr/bin/env bash
# A long job, to try Stop: prints a line every 2 seconds for 10 minutes.
for i in $(seq 1 300); do
  echo "tick $i"
  sleep 2
done
