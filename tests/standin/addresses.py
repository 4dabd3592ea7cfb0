"""Where the stand-in reaches an instance's application (health checks, load balancers).

Convention: an EC2 instance's application listens on a loopback address of its own,
127.B.C.D, where B.C.D are the last three octets of the private IPv4 address moto gave
the instance (DescribeInstances' PrivateIpAddress; moto's default VPC hands out
172.31.x.y, so the instance answers at 127.31.x.y). Linux routes all of 127.0.0.0/8 to
the loopback interface, so a process binds such an address with no setup (macOS only
has 127.0.0.1 unless aliases are added). The port is the target's port (the target
group's unless RegisterTargets named one), or the health check port when the target
group sets one. A target of type `ip` is reached at its Id, as AWS does.
"""


def loopback_for(private_ip):
    """127.B.C.D for the private address A.B.C.D."""
    return "127." + ".".join(private_ip.split(".")[1:])


def target_host(target_group, target_id):
    """The address a target of `target_group` is reached at, or None if there is none
    (an instance moto no longer knows)."""
    if target_group.target_type == "ip":
        return target_id
    instance = target_group.ec2_backend.get_instance_by_id(target_id)
    if instance is None or not instance.private_ip:
        return None
    return loopback_for(instance.private_ip)
