// Public header. The umbrella header of BroachRpc: include this one.
#pragma once

#include "broach/async.hpp"
#include "broach/call_future.hpp"
#include "broach/codec.hpp"
#include "broach/config.hpp"
#include "broach/endpoint.hpp"
#include "broach/error.hpp"
#include "broach/histogram.hpp"
#include "broach/interceptor.hpp"
#include "broach/node.hpp"
#include "broach/security.hpp"
