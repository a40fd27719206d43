"""E-commerce review feeds: presets of the declarative ``http_feed`` source (Taobao/Tmall TOP, JD JOS,
Dianping/Meituan); their request signing is :mod:`hub.sdk.signing`."""
