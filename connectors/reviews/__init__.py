"""E-commerce review feeds: presets of the declarative ``http_feed`` source (Taobao/Tmall TOP, JD JOS,
Dianping/Meituan) and their signing strategies (:mod:`connectors.reviews.signing`)."""
