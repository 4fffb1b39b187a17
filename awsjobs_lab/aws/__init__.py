"""The AWS layer, shared by the EC2 backend (`backends/ec2/`) and the image builder (`image.py`):
clients, errors, tags, instances, SSM, launch, catalogue and prices, selection, the worker's boot
script, the job's command and the monitor."""
