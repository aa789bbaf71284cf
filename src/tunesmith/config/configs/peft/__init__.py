"""Packaged ``peft=`` presets: lora, dora, qlora, int8 and full fine-tuning."""
