"""Source text of the binary documents in ``knowledge/`` (PDF and DOCX).

Binary files cannot be reviewed in a diff, so their words live here and ``python -m
tests.support.sample_docs`` turns them into the files; changing a fact means editing this module
and regenerating, never hand-editing a PDF. The Markdown, text and HTML files of ``knowledge/`` are
committed as they are and are not described here.

The facts below are fictional ("Qinghe Technology" / 青禾科技 does not exist) except where they
describe kbqa itself; ``tests/e2e_questions.json`` asks about some of them, so keep each such fact
in exactly one document.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PdfSource:
    """One PDF of the sample knowledge base: one string per page, laid out by ``write_pdf``."""

    path: str  # relative to knowledge/
    title: str
    pages: tuple[str, ...]
    cjk: bool = False


@dataclass(frozen=True)
class DocxSource:
    """One DOCX of the sample knowledge base: a heading, paragraphs, then one table."""

    path: str  # relative to knowledge/
    heading: str
    paragraphs: tuple[str, ...]
    table: tuple[tuple[str, ...], ...] = field(default_factory=tuple)


# English, two pages with different facts on each, so a loader that only reads page 1, or mixes up
# page numbers, is caught by the question about the helpdesk extension (page 2).
EQUIPMENT_GUIDE = PdfSource(
    path="handbook/equipment_guide.pdf",
    title="Qinghe Technology Office Equipment Guide",
    pages=(
        "Qinghe Technology Office Equipment Guide\n"
        "\n"
        "Part 1: Laptops and desks\n"
        "\n"
        "Every new employee receives a Lenovo ThinkPad T14 laptop with 32 GB of memory on the first "
        "working day. Designers may ask for a 16-inch MacBook Pro instead; the request must be approved "
        "by the head of the design team.\n"
        "\n"
        "Laptops are replaced every 48 months. An older laptop that still works is wiped by IT and "
        "donated to a local school; it is never sold to employees.\n"
        "\n"
        "Each desk has one 27-inch monitor, a USB-C docking station and a height-adjustable frame. "
        "Engineers may request a second monitor through an IT ticket.\n"
        "\n"
        "A lost or stolen laptop must be reported to IT within 24 hours so that the disk encryption "
        "keys can be revoked.",
        "Part 2: Network access and IT support\n"
        "\n"
        "To work from home, connect to the company network with the Qinghe Connect VPN client. The "
        "VPN asks for your domain password and a six-digit code from the authenticator app.\n"
        "\n"
        "The IT helpdesk is in room 1206 on the 12th floor. It is open from 9:00 to 18:00 on working "
        "days and can be reached by phone on extension 8021. Outside these hours, write to the helpdesk "
        "mailbox; urgent security incidents are handled by the on-call engineer around the clock.\n"
        "\n"
        "Software that is not on the approved list must be requested through an IT ticket; approved "
        "requests are installed within 2 working days.\n"
        "\n"
        "On the last working day, hand your laptop, docking station and staff badge back to the IT "
        "helpdesk and get a signed return slip.",
    ),
)

# Chinese, set in reportlab's built-in STSong-Light CID font (no font file needs to be shipped).
EVALUATION_REPORT = PdfSource(
    path="kbqa_evaluation.pdf",
    title="kbqa 检索效果评测报告",
    cjk=True,
    pages=(
        "kbqa 检索效果评测报告\n"
        "\n"
        "一、评测目的\n"
        "检查 kbqa 能否从知识库中找到回答问题所需的段落，并给出忠实于资料的答案。\n"
        "\n"
        "二、评测数据\n"
        "评测集由青禾科技行政部和研发部共同整理，共 150 个问题，其中中文问题 110 个，英文问题 40 个。"
        "每个问题都人工标注了答案所在的文件和页码。\n"
        "\n"
        "三、评测指标\n"
        "召回率：前 5 个检索结果中包含正确段落的问题所占的比例。\n"
        "答案准确率：答案内容与人工标注一致的问题所占的比例。\n"
        "\n"
        "四、评测结果\n"
        "召回率为 92.7%，答案准确率为 85.3%。出错最多的是表格类问题：表格被切成多个块之后，"
        "表头和数据行常常落在不同的块里。\n"
        "\n"
        "五、改进计划\n"
        "下一版本计划加入重排序模型，目标是把召回率提高到 96% 以上。评测负责人为研发部的林晓舟。",
    ),
)

PDFS: tuple[PdfSource, ...] = (EQUIPMENT_GUIDE, EVALUATION_REPORT)

# Chinese; the table comes after the paragraphs, as ``write_docx`` lays it out, so the last
# paragraph introduces it.
LEAVE_POLICY = DocxSource(
    path="handbook/leave_policy.docx",
    heading="青禾科技员工休假制度",
    paragraphs=(
        "本制度适用于与青禾科技签订劳动合同的全体员工，自 2024 年 1 月 1 日起施行，由人力资源部负责解释。",
        "一、申请流程。年假、病假、调休等所有假期，都须在公司内部的「禾苗」人事系统中提交申请。"
        "请假 3 天以内由直属主管审批；超过 3 天的，还需部门负责人审批。年假申请应至少提前 5 个工作日提交。",
        "二、年休假。员工每年享有带薪年休假，天数按累计工龄计算，见下表。"
        "当年没有休完的年假可以顺延到次年 3 月 31 日，逾期作废，不折算工资。",
        "三、病假。因病请假须提供医院出具的病假证明。每年前 6 天病假工资全额发放。",
        "四、婚假。依法登记结婚的员工可享受婚假 13 天，须在登记之日起一年内休完。"
        "产假、陪产假按国家和当地规定执行。",
        "附表：年休假天数与累计工龄的对应关系。",
    ),
    table=(
        ("累计工龄", "年休假天数"),
        ("不满 1 年", "5 天"),
        ("满 1 年不满 3 年", "10 天"),
        ("满 3 年不满 10 年", "15 天"),
        ("满 10 年及以上", "20 天"),
    ),
)

DOCXS: tuple[DocxSource, ...] = (LEAVE_POLICY,)
