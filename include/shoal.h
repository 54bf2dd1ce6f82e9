/* shoal: multi-process worker orchestrator. The whole public API. */
#ifndef SHOAL_H
#define SHOAL_H

#include "shoal/error.h"
#include "shoal/wire.h"
#include "shoal/node.h"
#include "shoal/app.h"
#include "shoal/dispatch.h"
#include "shoal/supervise.h"

#define SHOAL_VERSION "0.1.0"

#endif
