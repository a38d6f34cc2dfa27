// AMX tile configuration shared by every AMX kernel of a thread: each kernel names its shape set
// with an id, and the configuration is loaded only when the thread's current one differs (a
// kernel that skipped loading after another kernel reshaped the tiles would compute garbage).
// Include only from _amx.cpp files.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace aha {
namespace amx {

// The palette-1 tile configuration (Intel SDM, LDTILECFG).
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

inline int& current_tile_config() {
  thread_local int id = 0;
  return id;
}

// Loads `c` on this thread unless configuration `id` (≠ 0) is already loaded.
inline void load_tile_config(int id, const TileConfig& c) {
  int& cur = current_tile_config();
  if (cur == id) return;
  _tile_loadconfig(&c);
  cur = id;
}

}  // namespace amx
}  // namespace aha
