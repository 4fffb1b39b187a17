"""The AWS layer of the EC2 backend: clients, catalogue and prices, selection, the worker's boot
script, the SSM command and the monitor. Only `backends/ec2.py` uses it."""
