#!/usr/bin/env python3
"""Loads checkpoints written by DecoderModel.SavePretrained with transformers' from_pretrained and compares the logits
transformers computes with the logits our library computed (ours.safetensors beside each checkpoint).
    python3 tools/check_saved_with_transformers.py DIR [DIR ...]
"""
import sys
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

worst = 0.0
for path in sys.argv[1:]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    ours = load_file(f"{path}/ours.safetensors")
    with torch.no_grad():
        logits = model(input_ids=ours["input_ids"]).logits
    diff = (logits - ours["logits"]).abs().max().item()
    worst = max(worst, diff)
    print(f"{path}: {type(model).__name__}, max |logits - ours| = {diff:.3g}")
print("PASS" if worst <= 1e-4 else "FAIL")
sys.exit(0 if worst <= 1e-4 else 1)
