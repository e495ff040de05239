# The seed's example caller (README, "详细案例"), unchanged except for the
# config path and a logging.basicConfig so that its log lines show.
#   PYTHONPATH=build/python /usr/bin/python3 examples/python/caller.py examples/python/application2.json
import sys

from BroachRpc import BroachFramework,BroachApply
import time
from BroachRpc.common import GlobalVariable

BroachFramework.run(sys.argv[1] if len(sys.argv) > 1 else "./application2.json")

@BroachApply.rpcCall(name="work00")
def t0(*args, **kwargs):
    pass
@BroachApply.rpcCall(name="work01")
def t1(*args, **kwargs):
    pass
@BroachApply.rpcCall(name="work02")
def t2(*args, **kwargs):
    pass
@BroachApply.rpcCall(name="work05")
def t5(*args, **kwargs):
    pass
@BroachApply.rpcCall(name="work06")
def t6(*args, **kwargs):
    pass
@BroachApply.rpcCall(name="work07")
def t7(*args, **kwargs):
    pass


def t00():
    try:
        logging.info("调用work00 返回 "+str(t0()))
    except Exception as e:
        logging.error(str(e))
def t01():
    try:
        return t1(1,2)
    except Exception as e:
        logging.error(str(e))
def t02():
    try:
        return t2(1,2)
    except Exception as e:
        logging.error(str(e))
def t05():
    try:
        logging.info(t5())
    except Exception as e:
        logging.exception(exc_info=True, msg=str(e))
def t06():
    try:
        logging.info(t6())
    except Exception as e:
        logging.exception(exc_info=True, msg=str(e))
def t07():
    try:
        logging.info(t7())
    except Exception as e:
        logging.exception(exc_info=True, msg=str(e))

import logging
logging.basicConfig(level=logging.INFO)
time.sleep(6)
logging.info("调用开始")
logging.info("路由表 "+str(GlobalVariable.FuncRouteRpc))
for i in range(0,10):
    t00()
logging.info("调用work01 返回 "+str(t01()))
logging.info("调用work02 返回 "+str(t02()))
logging.info("路由表 "+str(GlobalVariable.FuncRouteRpc))


time.sleep(10)
from threadPool import BroachPool
testPool = BroachPool.Pool(core=50,
                           threadMax=50,
                           keepAliveTime=10,
                           queue=BroachPool.ArrayQueue(
                               queueMax=100000,
                               isExcInfo=False,
                               createThreadThreshold=10),
                           poolName="testPool")
logging.info("调用开始")
logging.info("路由表 "+str(GlobalVariable.FuncRouteRpc))
for i in range(0,500):
    testPool.submit(t05)
#t5这个任务处理时间很长 当超过内置线程负载的时候会存到队列里等待等队列里的
#任务结束后返回发起端已经超时了。
