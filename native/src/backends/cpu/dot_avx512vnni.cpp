// The AVX-512 with VNNI (vpdpbusd, vpdpwssd) dot-product tiles: dot_avx512_impl.h compiled with this file's flags.
#define AHA_DOT_AVX512_NS avx512vnni
#include "backends/cpu/dot_avx512_impl.h"
