//! permessage-deflate (RFC 7692): per-direction inflater and deflater with context takeover.
