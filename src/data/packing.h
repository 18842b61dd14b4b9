// Packing prompt/completion examples into rows of a fixed width, each example kept whole and apart (TRL's packing, best-fit decreasing).
#pragma once

#include <cstddef>

#include "src/data/hdf5_dataset.h"

namespace mpitrain::data {

// Places every example (each at most `width` tokens) whole into rows of at most `width` tokens:
// longest first, each into the row it fills most tightly (best-fit decreasing, as TRL's "bfd"
// packing), a new row where none has room. Within a row the examples keep the order they were
// placed in. Each example's position ids run from 0, which is what keeps its attention inside
// it (models::causal_decoder_mask); its first label is -100, since that token is not predicted
// by anything of its own (in a row alone it is never a target either). So a packed batch gives
// the loss and gradients its examples give unpacked, in fewer, fuller rows.
TokenLabelledRows pack_examples(const TokenLabelledRows& examples, std::size_t width);

}  // namespace mpitrain::data
