"""The learning loop: training sets on disk, P×K and DFGS batch samplers, and (part B) the trainer."""
