"""`python -m benchmarks.chaos`: dozens of EC2 jobs on the simulated AWS (`tests/awssim`) while
faults are injected into every AWS call type, the server is SIGKILLed at chosen moments and
restarted on the same store, and jobs are stopped, interrupted and rebooted; then the
invariants (no leaked instance, every job final with a reason, none run twice) are checked.

Modules: `timing` (the scaled clock of AWS and of the app), `plan` (the seeded schedule),
`stage` (the simulator and the server), `tap` (what each AWS call did, and the kill hooks),
`drive` (running the plan), `check` (the invariants and figures), `table` (the printed table,
JSON and the RESULTS.md section). See benchmarks/README.md, section "chaos".
"""
