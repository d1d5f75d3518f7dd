"""vramscribe: many Whisper jobs at once on shared GPUs, admitted by live free memory."""

__version__ = "0.1.0"
