"""Pure-torch math of masked diffusion: schedules, noising, losses, sampling."""
