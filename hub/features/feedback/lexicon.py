"""Word lists the feedback model reads beside its character n-grams.

The trained weights come from a corpus of mostly shopping and hotel reviews; these lists carry what a
food-delivery, restaurant, hotel or retail complaint says in words that corpus rarely has (凉了, 洒了,
起球, 不隔音...). The model does not learn one weight per listed word: it learns how much "a listed
negative word, not negated" and "a listed positive word under 不/没" weigh, so a word that never
appeared in training still counts. Written by hand for cxhub (Apache-2.0, like the code).
"""

from __future__ import annotations

NEGATIVE = """
差 很差 太差 超差 极差 差劲 差评 垃圾 失望 难吃 难喝 恶心 糟糕 后悔 退货 退款 投诉 过期 变质 发霉 霉味 坑 坑人 被坑 骗
骗人 骗子 被骗 欺骗 慢 太慢 超慢 好慢 很慢 冷漠 恶劣 不耐烦 脏 很脏 太脏 脏乱 贵 太贵 偏贵 不值 不值得 破损 坏了 损坏 漏
少了 缺 错 假 假货 烂 臭 难闻 异味 腥 腥味 不好 不行 不新鲜 再也不 千万别 别买 问题 郁闷 生气 气死 无语 没人理 敷衍 粗鲁
吵 太吵 嘈杂 硬 凉了 凉透 冷了 洒了 撒了 漏了 少送 漏送 送错 发错 超时 迟到 等了 半天 坨了 夹生 没熟 太咸 太油 太辣 太甜
油腻 腻 干巴巴 不入味 寡淡 没味道 咸 苦 酸了 馊 馊了 拉肚子 肚子疼 中毒 虫子 头发 苍蝇 蟑螂 异物 不卫生 不干净 老旧
陈旧 破旧 隔音差 不隔音 霉 潮湿 漏水 没热水 坏的 故障 死机 卡顿 发热 发烫 起球 掉色 色差 开胶 开线 线头 毛刺 瑕疵
划痕 缺货 不符 不一致 与描述不符 不合身 偏小 偏大 不舒服 难受 过敏 痒 刺鼻 甲醛 盗版 二手 翻新 山寨 劣质 粗糙 做工差
质量差 不灵 没用 鸡肋 垃圾货 拒绝 不处理 不理 不回复 推诿 扯皮 踢皮球 拖 拖延 态度差 态度恶劣 素质差 没礼貌 凶 骂人
摆脸色 爱搭不理 不专业 乱收费 多收 收费 讹 宰客 黑店 不推荐 不建议 不会再 不会再来 再也不来 最差 最烂 倒闭 差评 一星
减分 扣分 遗憾 可惜 不满 不满意 不爽 崩溃 吐了 恶心死 失败 浪费 白花 不划算 不实惠 性价比低 华而不实 名不副实 一般般
勉强 凑合 太小 狭小 闷 吵闹 噪音 臭味 烟味 异响 断电 没信号 网速慢 上当 失望透顶 坑爹 心塞 着急 急死 烦 烦人 差强人意
"""

POSITIVE = """
好 很好 非常好 挺好 真好 不错 很不错 挺不错 满意 很满意 非常满意 喜欢 很喜欢 好吃 好喝 美味 可口 鲜美 新鲜 热情 周到 快
很快 迅速 及时 准时 干净 整洁 卫生 推荐 值得 值 实惠 划算 便宜 赞 点赞 棒 很棒 超棒 完美 贴心 暖心 舒服 舒适 方便 便利
专业 耐心 细心 感谢 谢谢 还会 下次还 回购 五星 好评 正品 结实 耐用 精致 漂亮 好看 清晰 流畅 给力 靠谱 放心 安心 惊喜
物超所值 物美价廉 性价比高 超值 优惠 入味 香 嫩 脆 酥 鲜 地道 正宗 分量足 量大 热乎 热腾腾 安静 宽敞 明亮 温馨 舒心
友好 礼貌 热心 负责 认真 用心 到位 高效 顺利 完好 严实 合身 合适 百搭 柔软 顺滑 好用 实用 好评如潮 无可挑剔 一流 优秀
满分 爱了 绝了 yyds 好棒 太棒 超赞 很赞 不二之选 首选 必点 必买 强烈推荐 值得推荐 宾至如归 物有所值 开心 愉快 享受
"""

#: words that flip the polarity of the listed word right after them (within two characters)
NEGATORS = ("不是很", "不太", "不怎么", "并不", "不", "没有", "没", "无", "未", "别", "毫不", "毫无", "并非", "不算")

#: a clause after one of these carries the verdict (虽然…但是…, 不错，就是…)
CONTRAST = ("但是", "但", "可是", "不过", "就是", "只是", "然而", "却", "可惜")

#: emoji and emoticons with a clear polarity (one token each in the features)
EMOJI_NEGATIVE = "😡😠🤬😤😞😒🙄😩😫😣😖👎💩😭😢🤮🤢😷😰"
EMOJI_POSITIVE = "👍😊😄😁😀😃😍🥰😘❤💕💯🎉👏🙏😋🤤✌🌹"

#: English and pinyin words customers mix in (hao chi, lajī, nice)
LATIN_NEGATIVE = frozenset(
    [
        "bad",
        "terrible",
        "awful",
        "worst",
        "poor",
        "disappointed",
        "disappointing",
        "slow",
        "dirty",
        "rude",
        "broken",
        "fake",
        "refund",
        "cha",
        "chajin",
        "laji",
        "lj",
        "tm",
        "nm",
        "wtf",
        "shit",
        "sucks",
    ]
)
LATIN_POSITIVE = frozenset(
    [
        "good",
        "great",
        "nice",
        "excellent",
        "perfect",
        "love",
        "like",
        "awesome",
        "amazing",
        "fast",
        "clean",
        "tasty",
        "delicious",
        "recommend",
        "hao",
        "haochi",
        "bucuo",
        "zan",
        "ok",
        "okay",
        "yyds",
    ]
)


def words(block: str) -> frozenset[str]:
    """The whitespace-separated words of one of the lists above."""
    return frozenset(block.split())


NEGATIVE_WORDS = words(NEGATIVE)
POSITIVE_WORDS = words(POSITIVE) - NEGATIVE_WORDS
