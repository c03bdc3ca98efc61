/*
 * pycode.h - the PyTorch code of a model: the nn.Module a SPEC describes,
 * as a Python file a user runs with nothing but torch installed.
 *
 * The file defines `Model`, a plain nn.Module subclass constructible with no
 * arguments, whose self.net is the nn.Sequential of the SPEC's top-level
 * items (blocks as the Residual and Concat modules the file also defines),
 * so its state_dict keys are the net's tensor names (net.h) and
 *   exec(open("model.py").read()); m = Model()
 *   m.load_state_dict(safetensors_file_as_dict, strict=True)
 * loads an export of the same job. Model() initialises as traind does for
 * the SPEC (the named ResNets: torchvision's init), so after
 * torch.manual_seed(seed) it holds the initial weights a job with rng torch
 * and that seed starts from. Model.input_shape is the per-sample input.
 *
 * Thread: pure; any thread.
 */
#ifndef TRAIND_PYCODE_H
#define TRAIND_PYCODE_H

#include <stddef.h>

#include "traind/error.h"
#include "traind/spec.h"

/* The code of spec on inputs of shape `in` into a new malloc'ed string
 * (*out, NUL-terminated, *len bytes without the NUL). 0, -EINVAL (the spec
 * does not fit `in`: err says why) or -ENOMEM. */
int pycode_write(const struct model_spec *spec, struct shape in, char **out, size_t *len,
		 struct tr_err *err);

#endif
