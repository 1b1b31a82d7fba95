"""
Parameter groups for discriminative learning rates: [`detect.detect_groups`] names the model's parts (head, body,
adapters, layers); [`build`] turns them into optimizer param groups (layer-decay ratios, the Trainer's weight-decay
split, a result's suggestions).
"""
