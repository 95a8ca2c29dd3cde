"""RDN weights for geosr: ``rdn_x4_3b.safetensors`` (the whole network) and ``rdn_x2_3b`` /
``rdn_x3_3b`` (their upsamplers only; the body is x4's, pinned by SHA-256 in their cards'
``body_from``). geosr finds this folder through the ``geosr.weights`` entry point; nothing here
is imported at run time."""
