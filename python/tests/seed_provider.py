"""The seed's example provider (../shared/seed/README.md, 详细案例), with only
the config path taken from the command line and sleeps scaled down so the
test stays short. work00 returns this provider's address."""
import sys
import time

from BroachRpc import BroachFramework, BroachApply

node = BroachFramework.run(sys.argv[1])


@BroachApply.rpcRoute()
def work00():
    return node.address


@BroachApply.rpcRoute()
def work01(x, y):
    return x + y


@BroachApply.rpcRoute()
def work05():
    time.sleep(0.3)
    return "ok"


@BroachApply.rpcRoute()
def work07():
    time.sleep(3)
    return "ok"


@BroachApply.rpcRoute(name="greet")
def hello(name, punctuation="!"):
    return f"hello {name}{punctuation}"


print("ready", node.address, flush=True)
# As in the seed, the script ends here and the running framework keeps the
# process serving.
