// The console's script (placeholder).
