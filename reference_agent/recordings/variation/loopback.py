"""snmpsim variation: answer with an earlier OID (args: to=OID) so a walk never ends."""

from pysnmp.proto import rfc1902


def init(**context):
    pass


def variate(oid, tag, value, **context):
    target = dict(x.split("=", 1) for x in value.split(","))["to"]
    return rfc1902.ObjectName(target), tag, rfc1902.Integer32(1)


def shutdown(**context):
    pass
