# The seed's example provider (README, "详细案例"), unchanged except for the
# config path and the `import time` its text leaves out.
#   PYTHONPATH=build/python /usr/bin/python3 examples/python/provider.py examples/python/application1.json
import sys
import time

from BroachRpc import BroachFramework,BroachApply

BroachFramework.run(sys.argv[1] if len(sys.argv) > 1 else "./application1.json")

@BroachApply.rpcRoute()
def work00():
    return "127.0.0.1:18080"

@BroachApply.rpcRoute()
def work01(x,y):
    return x+y

@BroachApply.rpcRoute()
def work05():
    time.sleep(3)
    return "ok"

@BroachApply.rpcRoute()
def work06():
    time.sleep(6)
    return "ok"

@BroachApply.rpcRoute()
def work07():
    time.sleep(10)
    return "ok"
