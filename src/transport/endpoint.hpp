// Internal header: the transport layer speaks of the public Endpoint type.
#pragma once
#include "broach/endpoint.hpp"
