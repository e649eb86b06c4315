/* scheduler_config.c: not written yet */
#include "ddpm.h"
