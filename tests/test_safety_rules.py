"""Regression tests for the rule classes that real messages (crisis_real dev) showed missing or wrong.

Each case is phrased for this project (no row of the external sets is copied); the rules alone
(``assess_lexicon``) are checked, so a fix in the lexicon cannot hide behind the classifier.
"""

import pytest

from cbt_llm.safety import assess_lexicon


@pytest.mark.parametrize("text", [
    # a noun 死亡 as a wish
    "我渴望死亡", "死亡对我来说是一种解脱", "我一直在期待死亡",
    # 没必要活
    "我没必要活下去了", "感觉自己没有必要再活着了",
    # a verb + 过/不 + 死
    "我想过死", "割了好几次都割不死", "吃了那么多药都吃不死",
    # a suicide-pact invitation
    "有没有人一起自杀", "想找个人一起去死", "anyone want to end it together?", "looking for a suicide pact partner",
    # a bare 想跳 with a height
    "我在28楼，好想跳", "站在天台上就想往下跳",
    # a lethal-means question without 怎么自杀
    "什么药吃了能死", "什么药不用处方也能买到，还能死的", "哪种药吃多了会死",
    # self-harm verbs beyond cutting
    "我又用针扎自己了", "忍不住用力咬自己的手直到出血", "I bite myself until it bleeds",
    "I punch the wall until my knuckles bleed",
    # "end it", "do it" with a time, "my self"
    "I just want to end it.", "I want to kill my self", "i want to hurt my self again",
    # a time word inside "never wake up"
    "I want to go to sleep tonight and never wake up", "I hope I fall asleep one day and never wake up",
    # 特别 is not a negation
    "我特别想死", "我真的特别特别想死",
    # 安乐死 is not the hyperbole 乐死
    "我想安乐死", "好想去瑞士安乐死",
])
def test_missed_crisis_wording_is_crisis(text):
    risk = assess_lexicon(text)
    assert risk.level == "crisis", risk


@pytest.mark.parametrize("text,level", [
    # the idiom 生不如死 is distress, not a wish to die
    ("痛得生不如死", "concern"),
    ("这段时间每天都生不如死", "concern"),
    # third persons the subject rule did not know
    ("那个女孩一直想死", "concern"),
    ("有个女孩天天说想死", "concern"),
    ("有的人会想自杀", "concern"),
    ("有些人总想死", "concern"),
    ("表姐最近一直想自杀", "concern"),
    # 你 / 让 in an earlier clause must not move the hit onto the writer
    ("你帮帮我闺蜜吧，天天说想死", "concern"),
    ("你劝劝我表妹吧，她总说不想活了", "concern"),
    # look-alikes of the new rules stay quiet
    ("I want to end it with my boyfriend", "none"),
    ("这个游戏怎么打都打不死boss", "none"),
    ("我特别想吃火锅", "none"),
    ("累得要死，但是很开心", "none"),
    ("好想和朋友一起去看电影", "none"),
])
def test_set_aside_and_look_alikes(text, level):
    risk = assess_lexicon(text)
    assert risk.level == level, risk


@pytest.mark.parametrize("text,level", [
    ("生了孩子以后越来越不开心，偶尔有想死的念头", "crisis"),   # 孩子 after 生了 is an object, not the subject
    ("一个人带两个孩子，老想着死", "crisis"),
    ("压力大的时候会想到自杀", "crisis"),
    ("他要是走了，我宁可去死", "crisis"),
    ("我宁可死也不吃香菜", "none"),
    ("想到死亡就害怕，睡不着", "none"),
    ("每天晚上都在扇自己耳光", "crisis"),
    ("我是怎么一刀一刀割下去的", "crisis"),
    ("一看到快速死亡的方法我就很兴奋", "crisis"),
    ("在我看来死亡就是自由", "crisis"),
])
def test_more_dev_miss_classes(text, level):
    assert assess_lexicon(text).level == level, assess_lexicon(text)


@pytest.mark.parametrize("text", [
    "sometimes I just want to blow my head off",
    "last week I put the gun against my head again",
    "I keep looking at my pistol and thinking about how easy it would be to pull the trigger",
    "is it better to leave a note behind or not?",
    "I've thought about the belt method a lot",
    "I almost ended it last spring and I'm back there now",
    "cutting doesn't help anymore",
    "goodnight forever, everyone",
    "I left a few goodbyes on my desk",
])
def test_english_dev_miss_classes(text):
    assert assess_lexicon(text).level == "crisis", assess_lexicon(text)


@pytest.mark.parametrize("text", [
    "I almost ended it with my girlfriend last night", "I finally pulled the trigger on a new laptop",
    "the climbing gym lets you use a rope for free",
])
def test_english_look_alikes_stay_quiet(text):
    assert assess_lexicon(text).level == "none", assess_lexicon(text)


@pytest.mark.parametrize("text", [
    # English classes the v3 rules missed in the written work set, in this test's own words
    "thinking about ctb after the holidays", "honestly so done with existing", "i want out of this life for good",
    "i'd just end it myself if i had the guts", "every morning i wish a bus would plow into me",
    "hoping the flight goes down so i never have to land", "the scan came back unclear and im hoping its cancer",
    "my plan is to take all the sleeping pills at once", "going to walk into the lake after dark",
    "i know exactly how i would end it", "first week home after my attempt and everyone is tiptoeing",
    "cut too deep on purpose this time", "punched the mirror on purpose and lied about it",
    "cut on my thigh again where nobody looks", "i really want to cut tonight",
    "carved the word into my arm with a pin", "the blade in my desk keeps calling me",
    "swallowed everything in the medicine cabinet an hour ago", "saved every pill from my last three refills",
    "cut my wrist with a razor last night", "cut my arm again tonight",  # an accident's wording does not mask these
    "cut my arm on the edge of the razor",
])
def test_english_written_set_miss_classes(text):
    assert assess_lexicon(text).level == "crisis", assess_lexicon(text)


@pytest.mark.parametrize("text", [
    # the look-alikes those English rules were held to
    "my attempt at sourdough failed again", "this is my attempt to explain the homework", "i want to cut my hair short",
    "want to cut down on sugar", "is the shelf high enough for the tv", "kids love to walk into the sea and splash",
    "going to walk into the river museum tomorrow", "hoping the plane lands on time", "wish the car would hit 60 faster",
    "i hope the bus doesnt crash in this snow", "i hope its bad weather so the game gets cancelled",
    "done with this life of fast food", "i want out of this job so badly", "pills with alcohol are dangerous",
    "took everything in the cabinet out to clean it", "my cat scratched my arm on purpose",
    "i hit the gym on purpose at 6am", "i know exactly how i would do it if i were the coach",
    "ctb means catch the bus right", "wanna stick around after class", "i bought a rope swing for the backyard",
    "just tying up loose ends at work before my vacation", "updated my will after the baby was born",
    "cut my arm on a fence while hiking, needed a bandage", "burned my hand on the stove again",
])
def test_english_written_set_look_alikes_stay_below_crisis(text):
    assert assess_lexicon(text).level != "crisis", assess_lexicon(text)


@pytest.mark.parametrize("text", [
    # passive wishes without a death word (classes seen in tests/data/safety_written_work.jsonl)
    "每天晚上都希望明天别醒了", "要是今晚睡着就不再醒该多好", "真想睡过去永远不要起来",
    "只求别再有明天", "好想永远休息，不是睡懒觉那种", "我要是就这么没了多好",
    "这世界上少我一个也没什么", "干脆病重一点死掉算了", "希望自己从来不存在",
    "查出来是坏的就好了，不用自己动手也能走",
    # intent and threats
    "我想结束自己的命", "我想结束掉自己", "他们都说我就该去死", "我要死给他们看",
    # goodbyes and last steps without a method word
    "这大概是最后一次跟她们说晚安了", "其实我是在跟他们告别", "我只想彻底解脱",
])
def test_written_set_miss_classes(text):
    risk = assess_lexicon(text)
    assert risk.level == "crisis", risk


@pytest.mark.parametrize("text", [
    "宝宝终于睡了，千万别醒了", "想结束这段感情", "毕业典礼上跟老师告别", "这是最后一次考试了",
    "论文就差最后一步了", "这是我最后能给你的建议", "这个项目我想结束掉", "电脑一直没反应，死机了",
])
def test_written_set_look_alikes_stay_below_crisis(text):
    assert assess_lexicon(text).level != "crisis"


@pytest.mark.parametrize("text", [
    # self-harm acts told without 自己 or a body part (classes missed in the written work set)
    "昨晚又划了，在浴室里", "从高一开始划手，到现在三年了", "划完看着血流出来才安静下来",
    "上次划的伤口还没好又裂开了", "用打火机烧了手背", "拿烟头往胳膊上按", "我一难受就拿拳头砸墙",
    "又想弄疼自己了", "好想去吞一把药，就想难受一下", "又把自己饿了两天", "昨晚又撞墙了，额头肿了一个包",
    # preparations and scouting told plainly
    "前几天在网上买了炭和胶带", "昨天晚上烧了炭，被邻居发现了", "这几天一直在查哪里的桥比较高",
    "安眠药都藏在抽屉最里面", "没死成，醒来在急诊",
    # passive wishes: an accident, never waking, never having been born, dying unnoticed
    "真想被车撞死", "过马路的时候想，要是有辆车撞过来就好了", "要是明天早上醒不过来就好了",
    "如果我没出生就好了", "我死了应该也没人发现吧", "我要是没了，他们都会轻松很多",
    "只要不是我自己动手，怎么走都行", "要是我也能跟着外婆去就好了", "真的好想有一天不用醒来",
    "如果明早我不醒了，他们会不会轻松一点", "要是老天哪天把我收走就好了", "就这样慢慢没了就好了",
    # a last goodbye without a method word
    "她不知道这是最后一次见我了", "过了这周我就不在了",
    # two cues together (a place looked over, a door that does not lock, a date chosen, never coming back,
    # money handed over, traces erased, a message to every friend)
    "那个天台我去看过了，门没锁，晚上也没人", "我已经选好日子了，那天去了就不回来了", "门窗都封好了，就等今晚",
    "把存款都转给我妈了，反正以后也用不着了", "日记本都烧掉了，给每个好朋友都发了一段话",
    "照片都删光了，以后不会再回来了",
    # 有没有人 ("anyone else?") and 没有人 (nobody) are not someone else at risk
    "有没有人跟我一样想死", "有没有人也这样，一难受就想弄疼自己",
    # clauses separated by spaces, as posts often are: the hit belongs to its own clause's subject
    "孩子哭到半夜 我抱着孩子在阳台上发呆 心里想着要是没了多好",
    # short wordings of intent and farewell that only the classifier used to catch
    "我不想活在这个世界上了", "不想活在世界上", "好想去天堂找外婆", "我是不是死了比较好", "我死了他们会难过吗",
    "好想杀了自己", "想把自己杀了", "有种想自我毁灭的冲动", "真想开车去撞车", "我想吃一整瓶安眠药",
    "想一睡不起", "想永远睡着", "想了结这一生", "再见了，这个世界",
])
def test_acts_plans_and_wishes_are_crisis(text):
    risk = assess_lexicon(text)
    assert risk.level == "crisis", risk


@pytest.mark.parametrize("text", [
    "今天又划了一天水", "划手机划到半夜", "老师让我们划重点，我又划了一遍", "切菜的时候不小心割到手",
    "这个山芋真烫手", "买了木炭和胶带，周末去露营烧烤", "被车撞了，腿骨折了在住院",
    "那个天台我去看过了，风景很好", "婚礼的日子选好了", "考完试就不回来了，直接去实习",
    "闹钟响了三遍我都醒不过来", "小时候被车撞过，现在还有点怕过马路", "过了这周我就不在这个部门了",
    "生一场大病才知道健康多重要", "有没有人推荐一部好看的电影", "吓得半死，还好没事", "这辈子最长的一天",
    "我妈把药都藏起来了，怕弟弟乱吃", "手机里的照片都删了，内存不够", "毕业以后就不会回来了，这个城市太贵",
    "你活腻了吧", "游戏里不小心杀了自己的队友", "我要吃一盒饼干", "宝宝终于永远睡着了一样安静", "世界杯再见",
    # everyday messages with the same words (tests/data/safety_lookalikes_zh.jsonl holds 300 such)
    "又撞墙了 方案第三次被毙", "狗追球一头撞墙上了", "放假第一天直接一睡不起", "谁偷吃了我的蛋糕？活腻了是吧",
    "这手机卡成这样 死了比较好 正好换新的", "这张专辑的主题是自我毁灭 编曲很迷幻", "把药藏在肉丸子里喂狗",
    "家里囤了点常用药 布洛芬和创可贴", "老人冬天爱在屋里烧炭取暖", "为了拍星空去郊区踩点 那边晚上没人",
    "求婚的地点定在江边 已经去踩过点了",
])
def test_acts_plans_and_wishes_look_alikes_stay_below_crisis(text):
    assert assess_lexicon(text).level != "crisis", assess_lexicon(text)
