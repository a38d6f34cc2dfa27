// Model files → one ModelConfig and one set of canonical (GGUF-style) tensor names,
// whether the source is a GGUF file or an HF folder (config.json + safetensors).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "aha/model.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"

namespace aha {

struct WeightStore {
  std::string path, format, name;
  ModelConfig config;
  std::map<std::string, Tensor> tensors;         // canonical name -> tensor
  std::vector<float> rope_freqs;                 // GGUF rope_freqs.weight (llama3 scaling), if present
  std::vector<std::shared_ptr<MappedFile>> files;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> owned;  // converted copies (e.g. bf16 norms → f32)
  std::vector<std::shared_ptr<void>> packed;                  // the buffers behind Tensor::packed

  // Packs every 2-D matmul weight whose dtype the active ISA has packed kernels for (kernels.h),
  // then lets go of the file's pages of those weights: they come back from the file if
  // anything reads them again (embedding rows of a tied lm head, training's backward). Models
  // past half the machine's memory keep their routed experts (or everything) in the file's
  // layout, mapped. Off with AHA_PACK=0. Returns the bytes packed.
  size_t pack_for_cpu(ThreadPool& pool);

  const Tensor* find(const std::string& name) const;
  // Throws "path: missing tensor 'name'" / "...: tensor 'name' has shape [a, b], expected [c, d]".
  const Tensor& get(const std::string& name, std::vector<int64_t> expected_ne) const;
  // The same tensor as f32 (converted once and owned by the store when stored otherwise).
  const Tensor& get_f32(const std::string& name, std::vector<int64_t> expected_ne);
};

// fp8_as: what an FP8 checkpoint's block-scaled e4m3 weights become (LoadOptions::fp8_as).
std::unique_ptr<WeightStore> load_weights(const std::string& path, const std::function<void(const LoadProgress&)>& progress,
                                          DType fp8_as = DType::FP8_B128);

// An FP8 weight [rows, cols] (e4m3 codes, row-major) with its weight_scale_inv [⌈rows/128⌉,
// ⌈cols/128⌉] (f32) as rows of `as` (FP8_B128, BF16, Q8_0, Q4_K, F32); cols a multiple of 128.
// Q4_K rows that are not whole 256-element super-blocks take Q8_0 (`as` says which was used).
// Errors name `what`.
std::vector<uint8_t> convert_fp8_weight(const uint8_t* codes, const float* scale_inv, int64_t rows, int64_t cols, DType& as, const std::string& what);

// HF tensor name -> canonical name ("" when the tensor is not one the engine uses).
std::string canonical_name_from_hf(const std::string& hf);

// Range checks every family's config passes (errors name `file`).
void check_config(const ModelConfig& c, const std::string& file);

// Parses an HF config.json text into a ModelConfig (errors name `file`).
ModelConfig config_from_hf_json(const std::string& text, const std::string& file);

// Per-pair rotary inverse frequencies [head_dim/2], with the config's scaling applied.
std::vector<float> rope_inv_freq(const ModelConfig& c, const std::vector<float>& gguf_rope_freqs);

}  // namespace aha
