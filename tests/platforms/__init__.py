"""Shopify and WooCommerce mapping, signature and conformance tests."""
