"""What train.py needs beside the model: tf.distribute strategies (and the
multi-worker patch), checkpoints a killed run resumes from, and the callbacks
that log an epoch. The model package, mgnet_tf, does not import it."""
