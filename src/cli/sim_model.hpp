#pragma once
// `llmd serve --sim` without a model file: a tokenizer still has to turn text prompts into ids and
// ids back into text. A SentencePiece-style vocab (model::make_synth_vocab) is written as a
// tokenizer-only GGUF into a private temporary directory, opened, and deleted again at once: the
// returned file's mapping stays valid after the unlink, and nothing is left behind on disk.
#include <cstdint>

#include "model/gguf.hpp"

namespace llmd::cli {

// Throws llmd::Error for a vocab size make_synth_vocab refuses or an unwritable $TMPDIR.
model::GgufFile open_synth_vocab(int64_t n_vocab);

}  // namespace llmd::cli
