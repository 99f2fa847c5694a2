"""GemNet-OC: the function of fairchem-core 1.10's ``gemnet_oc``, its size ladder and importer."""
