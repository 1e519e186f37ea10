"""vared2: VA-RED² video adaptive redundancy reduction, pure-torch core and data pipeline."""
