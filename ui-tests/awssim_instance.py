"""Launch one instance on the simulated AWS with the given tags and print its id.

`python awssim_instance.py <simulator url> '<tags as JSON>'`: what the Instances view tests use
to create an orphan of this tool (our tags, no job) or a stranger's instance (other tags),
with a direct RunInstances and no Jupyter server involved. Only the simulator on 127.0.0.1 is
called, with dummy credentials.
"""

import json
import sys

import botocore.session


def main(url: str, tags_json: str) -> None:
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit(f"refusing to call {url}: only the local simulator")
    session = botocore.session.get_session()
    ec2 = session.create_client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    tags = [{"Key": k, "Value": v} for k, v in json.loads(tags_json).items()]
    answer = ec2.run_instances(
        ImageId="ami-12345678",
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    print(answer["Instances"][0]["InstanceId"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
