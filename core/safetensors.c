/* safetensors.c: not written yet */
#include "ddpm.h"
