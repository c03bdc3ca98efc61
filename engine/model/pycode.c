/*
 * pycode.c - a model's PyTorch code. See include/traind/pycode.h.
 *
 * One module constructor per item, in the order of the text, which is the
 * order PyTorch constructs them in (Python evaluates the arguments of
 * nn.Sequential(...) left to right, a block's branches before the block):
 * the order reset_parameters draws in, so Model() draws what traind draws.
 */
#include "traind/pycode.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct out {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void emit(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->oom = true;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		{
			size_t cap = o->cap * 2 + (size_t)n + 64;
			char *b = realloc(o->buf, cap);

			if (!b) {
				o->oom = true;
				return;
			}
			o->buf = b;
			o->cap = cap;
		}
	}
}

/* A Python float literal that reads back as v. */
static void real(char *buf, size_t len, double v)
{
	for (int prec = 6; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	if (!strpbrk(buf, ".eEn"))
		snprintf(buf + strlen(buf), len - strlen(buf), ".0");
}

static void layer_code(struct out *o, const struct layer_spec *l, struct shape in)
{
	char a[40], b[40];

	switch (l->kind) {
	case LAYER_FLATTEN:
		emit(o, "nn.Flatten()");
		break;
	case LAYER_IDENTITY:
		emit(o, "nn.Identity()");
		break;
	case LAYER_LINEAR:
		emit(o, "nn.Linear(%u, %u%s)", in.c, l->out, l->bias ? "" : ", bias=False");
		break;
	case LAYER_RELU:
		emit(o, "nn.ReLU()");
		break;
	case LAYER_TANH:
		emit(o, "nn.Tanh()");
		break;
	case LAYER_GELU:
		emit(o, "nn.GELU()");
		break;
	case LAYER_SIGMOID:
		emit(o, "nn.Sigmoid()");
		break;
	case LAYER_SILU:
		emit(o, "nn.SiLU()");
		break;
	case LAYER_LEAKYRELU:
		real(a, sizeof(a), l->p);
		emit(o, "nn.LeakyReLU(negative_slope=%s)", a);
		break;
	case LAYER_SOFTPLUS:
		real(a, sizeof(a), l->p);
		real(b, sizeof(b), l->threshold);
		emit(o, "nn.Softplus(beta=%s, threshold=%s)", a, b);
		break;
	case LAYER_DROPOUT:
		real(a, sizeof(a), l->p);
		emit(o, "nn.Dropout(p=%s)", a);
		break;
	case LAYER_BATCHNORM1D:
		emit(o, "nn.BatchNorm1d(%u)", in.c);
		break;
	case LAYER_BATCHNORM2D:
		emit(o, "nn.BatchNorm2d(%u)", in.c);
		break;
	case LAYER_CONV2D:
		emit(o, "nn.Conv2d(%u, %u, %u", in.c, l->out, l->k);
		if (l->stride != 1)
			emit(o, ", stride=%u", l->stride);
		if (l->padding)
			emit(o, ", padding=%u", l->padding);
		if (l->dilation != 1)
			emit(o, ", dilation=%u", l->dilation);
		if (l->groups != 1)
			emit(o, ", groups=%u", l->groups);
		emit(o, "%s)", l->bias ? "" : ", bias=False");
		break;
	case LAYER_MAXPOOL2D:
		emit(o, "nn.MaxPool2d(%u, stride=%u%s", l->k, l->stride, l->padding ? "" : ")");
		if (l->padding)
			emit(o, ", padding=%u)", l->padding);
		break;
	case LAYER_AVGPOOL2D:
		emit(o, "nn.AvgPool2d(%u, stride=%u)", l->k, l->stride);
		break;
	case LAYER_ADAPTIVEAVGPOOL2D:
		emit(o, "nn.AdaptiveAvgPool2d((%u, %u))", l->out, l->out_w);
		break;
	case LAYER_UPSAMPLE:
		emit(o, "nn.Upsample(scale_factor=%u.0, mode=\"nearest\")", l->k);
		break;
	case LAYER_EMBEDDING:
		emit(o, "nn.Embedding(%u, %u", l->num, l->out);
		if (l->padding_idx >= 0)
			emit(o, ", padding_idx=%d", l->padding_idx);
		emit(o, ")");
		break;
	case LAYER_POSEMBEDDING:
		emit(o, "PosEmbedding(%u, %u)", l->num ? l->num : in.h, in.c);
		break;
	case LAYER_LSTM:
	case LAYER_GRU:
		real(a, sizeof(a), l->p);
		emit(o, "%s(%u, %u, num_layers=%u, dropout=%s)", l->kind == LAYER_LSTM ? "LSTM" : "GRU", in.c,
		     l->out, l->layers, a);
		break;
	case LAYER_LAST:
		emit(o, "Last()");
		break;
	case LAYER_LAYERNORM:
		emit(o, "nn.LayerNorm(%u)", in.c);
		break;
	case LAYER_MHA:
		real(a, sizeof(a), l->p);
		emit(o, "SelfAttention(%u, %u, causal=%s, dropout=%s)", l->out, l->heads,
		     l->causal ? "True" : "False", a);
		break;
	case LAYER_TRANSFORMER:
		real(a, sizeof(a), l->p);
		emit(o, "EncoderLayer(%u, %u, %u, dropout=%s, norm_first=%s, causal=%s)", l->out, l->heads,
		     l->ff, a, l->norm_first ? "True" : "False", l->causal ? "True" : "False");
		break;
	case LAYER_RESIDUAL:
	case LAYER_CONCAT:
		break;
	}
}

static void indent(struct out *o, unsigned depth)
{
	emit(o, "%*s", (int)(depth * 4), "");
}

/* The nn.Sequential of `parent`'s branch `branch` (the top: parent -1). */
static void seq_code(struct out *o, const struct model_spec *spec, const struct shape *shapes,
		     struct shape in, int32_t parent, uint32_t branch, unsigned depth)
{
	uint32_t first = parent < 0 ? 0 : (uint32_t)parent + 1;
	uint32_t end = parent < 0 ? spec->n : spec->layers[parent].end;

	emit(o, "nn.Sequential(\n");
	for (uint32_t i = first; i < end; i++) {
		const struct layer_spec *l = &spec->layers[i];

		if (l->parent != parent || l->branch != branch)
			continue;
		indent(o, depth + 1);
		if (spec_is_block(l->kind)) {
			emit(o, "%s(\n", l->kind == LAYER_RESIDUAL ? "Residual" : "Concat");
			for (uint32_t b = 0; b < l->nbranches; b++) {
				indent(o, depth + 2);
				seq_code(o, spec, shapes, in, (int32_t)i, b, depth + 2);
				emit(o, ",\n");
			}
			indent(o, depth + 1);
			emit(o, "),\n");
			i = l->end - 1;
			continue;
		}
		layer_code(o, l, spec_input_shape(spec, shapes, in, i));
		emit(o, ",\n");
	}
	indent(o, depth);
	emit(o, ")");
}

static bool uses(const struct model_spec *spec, enum layer_kind k)
{
	for (uint32_t i = 0; i < spec->n; i++)
		if (spec->layers[i].kind == k)
			return true;
	return false;
}

int pycode_write(const struct model_spec *spec, struct shape in, char **out, size_t *len,
		 struct tr_err *err)
{
	struct out o = { 0 };
	struct shape *shapes;
	char *text;
	int rc;

	*out = NULL;
	*len = 0;
	shapes = malloc(SPEC_MAX_LAYERS * sizeof(*shapes));
	text = malloc(SPEC_TEXT_MAX);
	if (!shapes || !text) {
		free(shapes);
		free(text);
		return tr_err_set(err, -ENOMEM, "out of memory");
	}
	rc = spec_shapes(spec, in, 0, shapes, NULL, err);
	if (rc < 0)
		goto out;
	spec_text(spec, text, SPEC_TEXT_MAX);
	emit(&o, "# The PyTorch module of a traind model (written by traind).\n"
		 "#\n"
		 "#   exec(open(\"this file\").read())   # or import it\n"
		 "#   model = Model()\n"
		 "#   model.load_state_dict(weights, strict=True)   # an export's tensors\n"
		 "#\n"
		 "# SPEC: %.900s\n",
	     text);
	if (in.vocab)
		emit(&o, "# input: %u token ids per sample (a LongTensor (N, %u), each < %u)\n", in.h, in.h,
		     in.vocab);
	else if (in.seq)
		emit(&o, "# input: a sequence of %u positions of %u features per sample (N, %u, %u)\n", in.h,
		     in.c, in.h, in.c);
	else
		emit(&o, "# input: %u x %u x %u per sample%s\n", in.c, in.h, in.w, in.flat ? " (flat)" : "");
	emit(&o, "import torch\nfrom torch import nn\n\n");
	if (uses(spec, LAYER_RESIDUAL))
		emit(&o, "\nclass Residual(nn.Module):\n"
			 "    \"\"\"traind's residual(BODY; shortcut=SHORTCUT): body(x) + shortcut(x),\n"
			 "    the shortcut the identity when the SPEC gives none.\"\"\"\n\n"
			 "    def __init__(self, body, shortcut=None):\n"
			 "        super().__init__()\n"
			 "        self.body = body\n"
			 "        self.shortcut = shortcut if shortcut is not None else nn.Identity()\n\n"
			 "    def forward(self, x):\n"
			 "        return self.body(x) + self.shortcut(x)\n\n");
	if (uses(spec, LAYER_CONCAT))
		emit(&o, "\nclass Concat(nn.Module):\n"
			 "    \"\"\"traind's concat(BRANCH; BRANCH...): the branches' outputs along\n"
			 "    dim 1 (channels, or features).\"\"\"\n\n"
			 "    def __init__(self, *branches):\n"
			 "        super().__init__()\n"
			 "        self.branches = nn.ModuleList(branches)\n\n"
			 "    def forward(self, x):\n"
			 "        return torch.cat([b(x) for b in self.branches], dim=1)\n\n");
	if (uses(spec, LAYER_MHA) || uses(spec, LAYER_TRANSFORMER))
		emit(&o, "\ndef causal_mask(t):\n"
			 "    \"\"\"The attention mask that hides from each position the ones after it.\"\"\"\n"
			 "    return torch.triu(torch.ones(t, t, dtype=torch.bool), 1)\n\n");
	if (uses(spec, LAYER_LSTM) || uses(spec, LAYER_GRU)) {
		static const char *const rnn[2] = { "LSTM", "GRU" };

		for (int k = 0; k < 2; k++)
			if (uses(spec, k ? LAYER_GRU : LAYER_LSTM))
				emit(&o, "\nclass %s(nn.%s):\n"
					 "    \"\"\"traind's %s: nn.%s(batch_first=True), its output at every\n"
					 "    position (the state starts at zero in every sample).\"\"\"\n\n"
					 "    def __init__(self, input_size, hidden_size, num_layers=1, dropout=0.0):\n"
					 "        super().__init__(input_size, hidden_size, num_layers, batch_first=True,\n"
					 "                         dropout=dropout)\n\n"
					 "    def forward(self, x):\n"
					 "        return super().forward(x)[0]\n\n",
				     rnn[k], rnn[k], k ? "gru" : "lstm", rnn[k]);
	}
	if (uses(spec, LAYER_LAST))
		emit(&o, "\nclass Last(nn.Module):\n"
			 "    \"\"\"traind's last: a sequence's last position.\"\"\"\n\n"
			 "    def forward(self, x):\n"
			 "        return x[:, -1]\n\n");
	if (uses(spec, LAYER_POSEMBEDDING))
		emit(&o, "\nclass PosEmbedding(nn.Embedding):\n"
			 "    \"\"\"traind's posembedding: a learned vector per position, added.\"\"\"\n\n"
			 "    def forward(self, x):\n"
			 "        return x + self.weight[:x.shape[1]]\n\n");
	if (uses(spec, LAYER_MHA))
		emit(&o, "\nclass SelfAttention(nn.MultiheadAttention):\n"
			 "    \"\"\"traind's multiheadattention: self-attention, batch first, causal or not.\"\"\"\n\n"
			 "    def __init__(self, embed_dim, num_heads, causal=False, dropout=0.0):\n"
			 "        super().__init__(embed_dim, num_heads, dropout=dropout, batch_first=True)\n"
			 "        self.causal = causal\n\n"
			 "    def forward(self, x):\n"
			 "        mask = causal_mask(x.shape[1]).to(x.device) if self.causal else None\n"
			 "        return super().forward(x, x, x, attn_mask=mask, need_weights=False)[0]\n\n");
	if (uses(spec, LAYER_TRANSFORMER))
		emit(&o, "\nclass EncoderLayer(nn.TransformerEncoderLayer):\n"
			 "    \"\"\"traind's transformer_encoder_layer: batch first, relu, causal or not.\"\"\"\n\n"
			 "    def __init__(self, d_model, nhead, dim_feedforward, dropout=0.1, norm_first=False,\n"
			 "                 causal=False):\n"
			 "        super().__init__(d_model, nhead, dim_feedforward, dropout, batch_first=True,\n"
			 "                         norm_first=norm_first)\n"
			 "        self.causal = causal\n\n"
			 "    def forward(self, x):\n"
			 "        mask = causal_mask(x.shape[1]).to(x.device) if self.causal else None\n"
			 "        return super().forward(x, src_mask=mask)\n\n");
	emit(&o, "\nclass Model(nn.Module):\n");
	if (in.vocab)
		emit(&o, "    input_shape = (%u,)   # token ids\n    vocab = %u\n\n", in.h, in.vocab);
	else if (in.seq)
		emit(&o, "    input_shape = (%u, %u)   # positions, features\n\n", in.h, in.c);
	else
		emit(&o, "    input_shape = (%u, %u, %u)\n\n", in.c, in.h, in.w);
	emit(&o, "    def __init__(self):\n"
		 "        super().__init__()\n"
		 "        self.net = ");
	seq_code(&o, spec, shapes, in, -1, 0, 2);
	emit(&o, "\n");
	if (spec->init == SPEC_INIT_TORCHVISION)
		emit(&o, "        # torchvision's ResNet initialisation\n"
			 "        for m in self.modules():\n"
			 "            if isinstance(m, nn.Conv2d):\n"
			 "                nn.init.kaiming_normal_(m.weight, mode=\"fan_out\", nonlinearity=\"relu\")\n"
			 "            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):\n"
			 "                nn.init.constant_(m.weight, 1)\n"
			 "                nn.init.constant_(m.bias, 0)\n");
	if (spec->init == SPEC_INIT_GPT)
		emit(&o, "        # GPT-2's initialisation\n"
			 "        for m in self.modules():\n"
			 "            if isinstance(m, nn.Linear):\n"
			 "                nn.init.normal_(m.weight, 0.0, 0.02)\n"
			 "                if m.bias is not None:\n"
			 "                    nn.init.zeros_(m.bias)\n"
			 "            elif isinstance(m, nn.Embedding):\n"
			 "                nn.init.normal_(m.weight, 0.0, 0.02)\n");
	emit(&o, "\n    def forward(self, x):\n");
	if (in.vocab)
		emit(&o, "        return self.net(x.long())\n");
	else
		emit(&o, "        return self.net(x)\n");
	if (o.oom) {
		rc = tr_err_set(err, -ENOMEM, "out of memory");
		free(o.buf);
		goto out;
	}
	*out = o.buf;
	*len = o.len;
out:
	free(shapes);
	free(text);
	return rc;
}
