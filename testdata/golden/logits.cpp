// logits: llama.cpp's outputs for the LLaMA-family fixtures (README.md). For each stdin line
// "N id id ...", it decodes the prompt with logits at every position, then N greedy tokens one at a
// time through the KV cache (ties to the lower id), and prints one JSON line with prompt_ids,
// prompt_logits, greedy_ids and last_step_logits (the logits that chose the last greedy id).
// F32 KV cache, no flash attention, one sequence; the context is cleared between prompts.
//
// Build against a llama.cpp tree (commit c392e5094) built with cmake in BUILD:
//   g++ -std=c++17 -O2 -o logits logits.cpp -I SRC/include -I SRC/ggml/include \
//       -L BUILD/bin -lllama -lggml -lggml-base -Wl,-rpath,BUILD/bin
// Usage: logits MODEL.gguf < prompts
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "llama.h"

static void print_row(const float* x, int n) {
  std::printf("[");
  for (int i = 0; i < n; i++) std::printf(i ? ",%.9g" : "%.9g", x[i]);
  std::printf("]");
}

static int argmax(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf < prompts\n", argv[0]);
    return 2;
  }
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) {
    std::fprintf(stderr, "cannot load %s\n", argv[1]);
    return 1;
  }
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = cp.n_batch = cp.n_ubatch = 512;
  cp.type_k = cp.type_v = GGML_TYPE_F32;
  cp.flash_attn = false;
  cp.n_threads = cp.n_threads_batch = 1;
  llama_context* ctx = llama_init_from_model(model, cp);
  const int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    int steps;
    if (!(in >> steps)) continue;
    std::vector<llama_token> ids;
    for (llama_token t; in >> t;) ids.push_back(t);
    llama_kv_cache_clear(ctx);
    llama_batch b = llama_batch_init(int(ids.size()), 0, 1);
    for (size_t i = 0; i < ids.size(); i++) {
      b.token[i] = ids[i];
      b.pos[i] = int(i);
      b.n_seq_id[i] = 1;
      b.seq_id[i][0] = 0;
      b.logits[i] = 1;
    }
    b.n_tokens = int(ids.size());
    if (llama_decode(ctx, b)) return 1;
    std::printf("{\"prompt_ids\":[");
    for (size_t i = 0; i < ids.size(); i++) std::printf(i ? ",%d" : "%d", ids[i]);
    std::printf("],\"prompt_logits\":[");
    for (size_t i = 0; i < ids.size(); i++) {
      if (i) std::printf(",");
      print_row(llama_get_logits_ith(ctx, int(i)), V);
    }
    std::vector<float> last(llama_get_logits_ith(ctx, int(ids.size()) - 1),
                            llama_get_logits_ith(ctx, int(ids.size()) - 1) + V);
    llama_batch_free(b);
    std::vector<int> greedy;
    for (int s = 0; s < steps; s++) {
      int next = argmax(last.data(), V);
      greedy.push_back(next);
      if (s == steps - 1) break;
      llama_batch one = llama_batch_init(1, 0, 1);
      one.token[0] = next;
      one.pos[0] = int(ids.size()) + s;
      one.n_seq_id[0] = 1;
      one.seq_id[0][0] = 0;
      one.logits[0] = 1;
      one.n_tokens = 1;
      if (llama_decode(ctx, one)) return 1;
      const float* row = llama_get_logits_ith(ctx, 0);
      last.assign(row, row + V);
      llama_batch_free(one);
    }
    std::printf("],\"greedy_ids\":[");
    for (size_t i = 0; i < greedy.size(); i++) std::printf(i ? ",%d" : "%d", greedy[i]);
    std::printf("],\"last_step_logits\":");
    print_row(last.data(), V);
    std::printf("}\n");
  }
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
