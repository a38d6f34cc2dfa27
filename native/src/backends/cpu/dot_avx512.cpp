// The AVX-512 F/BW/DQ/VL, no VNNI dot-product tiles: dot_avx512_impl.h compiled with this file's flags.
#define AHA_DOT_AVX512_NS avx512
#include "backends/cpu/dot_avx512_impl.h"
